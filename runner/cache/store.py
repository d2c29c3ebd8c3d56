"""The on-disk stage cache.

An entry holds a stage's result for one unit of work (an image, a video frame,
one box of an image) as named numpy arrays in a safetensors file: no pickle.
Its key is the hash of exactly what the stage consumed, kept as separate
components so a miss can be explained; `EntryKey.of` is the one place a key
is made (from plain data, through runner.hashing.digest):

    input   the unit's content (image bytes; video hash + frame index; + the box)
    model   the checkpoint's sha256
    params  the stage's own parameters (and the model config it runs)
    code    the stage's code version and the library versions that change its numbers

Layout: <root>/<stage>/<input[:2]>/<input>/<digest>.safetensors, so all entries
for one input sit in one folder (that is what `explain` compares against).
Writes are atomic (temp + rename); each entry carries a sha256 of its arrays,
checked on read; an entry whose bytes are bad (format, checksum) is dropped
with a warning and recomputed; one that merely cannot be read now is kept.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as load_safetensors, save as save_safetensors

from runner import atomic
from runner.hashing import digest

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
COMPONENTS = ("model", "params", "code")


@dataclass(frozen=True)
class EntryKey:
    stage: str
    input: str
    model: str
    params: str
    code: str
    # the files behind `model`, role -> sha256 (not part of the key: it says which one changed)
    files: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, stage: str, input, model, params, code) -> "EntryKey":
        """The key of a unit of `stage`: each component is the digest of the
        plain data it is given (an object that has no canonical bytes is refused).
        `model`: the files the results are computed from, {what it is: sha256}."""
        files = tuple(sorted(model.items())) if isinstance(model, dict) else ()
        return cls(stage, digest(input), digest(model), digest(params), digest(code), files)

    @property
    def digest(self) -> str:
        text = "|".join((self.stage, self.input, self.model, self.params, self.code))
        return hashlib.sha256(text.encode()).hexdigest()


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Store:
    """A read-only store (a shared cache on a read-only mount, or without write
    permission) serves its entries and stores nothing, saying so once."""

    def __init__(self, root: str | Path, lock_timeout_s: float = atomic.DEFAULT_LOCK_TIMEOUT_S):
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s
        self.read_only = False
        if not atomic.writable(self.root):
            self._become_read_only("it is not writable")

    def _become_read_only(self, why: str) -> None:
        if not self.read_only:
            log.warning("cache %s: %s, so cached entries are used but new ones are computed without "
                        "being stored", self.root, why)
        self.read_only = True

    # -- paths ---------------------------------------------------------------
    def path(self, key: EntryKey) -> Path:
        return self.root / key.stage / key.input[:2] / key.input / f"{key.digest}{SUFFIX}"

    def _lock_path(self, key: EntryKey) -> Path:
        return self.root / ".locks" / key.digest[:2] / f"{key.digest}.lock"

    def overlapped(self, fn, *args) -> Future:
        """fn(*args) as a future: a stage claims its next batch and writes its last
        one through this while a batch computes. A folder has no round trips to
        hide, so it runs now, in this thread (its OS locks are this thread's), and
        its errors are raised here."""
        done: Future = Future()
        done.set_result(fn(*args))
        return done

    def try_lock(self, key: EntryKey):
        """The entry's lock, acquired, or None if another process computes it."""
        if self.read_only:
            return atomic.NoLock()
        try:
            return atomic.try_lock(self._lock_path(key))
        except OSError as err:
            self._become_read_only(f"cannot lock ({err.strerror})")
            return atomic.NoLock()

    def try_lock_many(self, keys: list[EntryKey]) -> list:
        return [self.try_lock(key) for key in keys]

    @staticmethod
    def release_many(locks: list) -> None:
        for held in locks:
            held.release()

    def wait_many(self, keys: list[EntryKey]) -> list[dict[str, np.ndarray] | None]:
        """Entries another process held: wait for each holder (or for its lock to go
        stale), then look each up (None: it was not written; compute it here)."""
        return [self._after_holder(key) for key in keys]

    def _after_holder(self, key: EntryKey) -> dict[str, np.ndarray] | None:
        with self.locked(key):
            return self.get(key)

    def locked(self, key: EntryKey):
        """Wait (at most lock_timeout_s) for whoever computes the entry."""
        if self.read_only:
            return atomic.NoLock()
        return atomic.locked(self._lock_path(key), f"the {key.stage} entry {key.digest[:12]}",
                             self.lock_timeout_s)

    # -- entries -------------------------------------------------------------
    def get(self, key: EntryKey) -> dict[str, np.ndarray] | None:
        """The entry's arrays, or None: not there, or its bytes are proven bad
        (then it is dropped and recomputed). An entry that cannot be read (no
        permission on a shared cache, too many open files, a stale NFS handle)
        is a miss this time, and is kept: nothing says its bytes are bad."""
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cannot read cache entry %s (%s): computing it without the cache this time; the entry is "
                        "kept", path, err.strerror or err)
            return None
        arrays = self._verified(path, data)
        if arrays is not None and not self.read_only:
            try:
                os.utime(path)  # last use, for `gc --max-size` (least recently used first)
            except OSError:
                pass
        return arrays

    def _verified(self, path, data: bytes) -> dict[str, np.ndarray] | None:
        """The arrays of an entry's bytes, or None (and the entry dropped) when they are bad."""
        try:
            meta, arrays = parse_entry(data)
        except ValueError as err:  # truncated or garbled
            return self._drop(path, f"unreadable ({err})")
        if meta.get("sha256") != arrays_checksum(arrays):
            return self._drop(path, "checksum mismatch")
        return arrays

    def get_many(self, keys: list[EntryKey]) -> list[dict[str, np.ndarray] | None]:
        return [self.get(key) for key in keys]

    def put(self, key: EntryKey, arrays: dict[str, np.ndarray], label: str = "") -> None:
        if self.read_only:
            return
        try:
            atomic.write_bytes(self.path(key), entry_bytes(key, arrays, label))
        except OSError as err:
            if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
                raise
            self._become_read_only(f"cannot store an entry ({err.strerror})")

    def put_many(self, entries: list[tuple[EntryKey, dict[str, np.ndarray], str]]) -> None:
        """Store (key, arrays, label) entries."""
        for key, arrays, label in entries:
            self.put(key, arrays, label)

    def _drop(self, path: Path, why: str) -> None:
        log.warning("cache entry %s is damaged (%s): recomputing it", path, why)
        try:
            os.unlink(path)
        except OSError:  # gone already, or a read-only cache
            pass
        return None

    # -- inspection ----------------------------------------------------------
    def siblings(self, key: EntryKey) -> list[dict]:
        """Metadata of the other entries computed from the same input."""
        folder = self.path(key).parent
        try:
            names = [n for n in os.listdir(folder) if n.endswith(SUFFIX)]
        except FileNotFoundError:
            return []
        return [m for m in (read_metadata(folder / n) for n in names) if m]

    def explain_miss(self, key: EntryKey) -> str:
        """Why `key` is not cached: which component differs from the closest
        entry made from the same input."""
        others = self.siblings(key)
        if not others:
            return "new input"
        wanted = asdict(key)
        diffs = [({c for c in COMPONENTS if m.get(c) != wanted[c]}, m) for m in others]
        closest, entry = min(diffs, key=lambda d: len(d[0]))
        if not closest:  # same key, file vanished meanwhile
            return "new input"
        reasons = {"model": " + ".join(f"changed {role}" for role in changed_files(entry, key)) or "changed file",
                   "params": "changed parameter", "code": "changed code"}
        return " + ".join(reasons[c] for c in COMPONENTS if c in closest)

    def entries(self) -> Iterator[Stored]:
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d != ".locks"]
            for name in filenames:
                if name.endswith(SUFFIX):
                    path = Path(dirpath) / name
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        continue
                    yield Stored(path, path.relative_to(self.root).parts[0], st.st_size, st.st_mtime)

    def metadata(self, entries: list[Stored]) -> list[dict]:
        """Each entry's metadata ({} where it cannot be read)."""
        return [read_metadata(e.where) or {} for e in entries]

    def remove(self, entries: list[Stored]) -> None:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.where)


@dataclass(frozen=True)
class Stored:
    """An entry as `entries()` lists it: where it is, its stage folder, bytes, last use (epoch seconds)."""
    where: Path | str
    stage: str
    size: int
    used: float


def entry_bytes(key: EntryKey, arrays: dict[str, np.ndarray], label: str) -> bytes:
    """An entry's file: its arrays, and its key, label, checksum and creation time as metadata."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    meta = {**{c: getattr(key, c) for c in ("stage", "input", *COMPONENTS)}, "files": json.dumps(dict(key.files)),
            "label": label, "sha256": arrays_checksum(arrays),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return save_safetensors(arrays, metadata=meta)


def changed_files(entry: dict, key: EntryKey) -> list[str]:
    """The roles of the files whose content differs between an entry's metadata and `key`."""
    try:
        then = json.loads(entry.get("files") or "{}")
    except ValueError:
        return []
    now = dict(key.files)
    return sorted(role for role in {*then, *now} if then.get(role) != now.get(role))


def parse_entry(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays) of a safetensors file's bytes; ValueError when they are not one."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + size])
        arrays = load_safetensors(data)
    except (ValueError, SafetensorError) as err:
        raise ValueError(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    return header.get("__metadata__") or {}, arrays


def header_metadata(data: bytes) -> dict:
    """The metadata in the header at the start of a safetensors file's bytes; ValueError when it is not one."""
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 + size:
        raise ValueError("the header is cut short")
    return json.loads(data[8:8 + size]).get("__metadata__") or {}


def read_metadata(path: Path) -> dict | None:
    try:
        with safe_open(str(path), framework="np") as f:
            return f.metadata() or {}
    except Exception:
        return None

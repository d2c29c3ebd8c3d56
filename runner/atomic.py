"""Atomic file writes and inter-process locks: every write of shared state
(cache entries, checkpoints, ONNX exports, memos, run files) goes through here.

Files are created with mode 0666 minus the umask, as open() makes them (not
0600 as mkstemp does), so a group sharing a cache or a run folder can read them.
A lock is an OS lock (released when its holder dies); waiting for one has a
timeout, so a hung holder cannot block every other job forever."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from runner.errors import RunnerError

DEFAULT_LOCK_TIMEOUT_S = 900.0


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a new empty file beside `path` to write; on success it replaces
    `path` in one rename, so readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def resumable_path(path: str | Path) -> Iterator[Path]:
    """Like atomic_path, but the partial file has a fixed name (`<name>.part`)
    and is kept when the writer fails, so a download can resume from it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    yield part
    os.replace(part, path)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj, indent: int | None = None, sort_keys: bool = False) -> None:
    write_bytes(path, json.dumps(obj, indent=indent, sort_keys=sort_keys).encode())


class LockTimeout(RunnerError):
    pass


class NoLock:
    """Stands in for a lock where none can be taken (a read-only cache)."""

    def release(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def writable(folder: str | Path) -> bool:
    """Whether files can be created in `folder` (or where it would be created):
    not a read-only filesystem, not a folder without write permission."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK)


def lock(path: str | Path) -> FileLock:
    """An OS-level lock on `path` (not yet acquired)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def try_lock(path: str | Path) -> FileLock | None:
    """The lock on `path`, acquired, or None if another process holds it."""
    held = lock(path)
    try:
        held.acquire(timeout=0)
    except Timeout:
        return None
    return held


@contextlib.contextmanager
def locked(path: str | Path, what: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock on `path`, waiting at most `timeout_s` for another holder."""
    held = lock(path)
    try:
        held.acquire(timeout=timeout_s)
    except Timeout:
        raise LockTimeout(
            f"waited {timeout_s:g} s for another process to finish {what} (lock {path}): if that "
            "process is hung, stop it and re-run; if it is slow, raise cache.lock_timeout_s") from None
    try:
        yield
    finally:
        held.release()

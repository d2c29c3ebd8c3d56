"""Atomic file writes and inter-process locks: every write of shared state
(cache entries, checkpoints, ONNX exports, memos, run files) goes through here.

Files are created with mode 0666 minus the umask, as open() makes them (not
0600 as mkstemp does), so a group sharing a cache or a run folder can read them.

Locks come in two kinds (cache.lock; `auto` picks by filesystem):
- "os": filelock's OS lock (flock), released by the kernel when its holder
  dies. Right on local disks; not honoured by every network filesystem.
- "create": a lock file made with O_CREAT|O_EXCL, which is atomic on NFS (v3
  and later), Lustre and GPFS. Its holder refreshes the file's mtime while it
  holds it; a waiter that sees the mtime unchanged for STALE_S seconds of its
  own clock (no clock skew between machines matters) takes the holder for
  dead and breaks the lock with an atomic rename, so one waiter wins.
Waiting for a lock has a timeout, so a hung holder cannot block every job forever."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import socket
import threading
import time
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


NETWORK_FILESYSTEMS = ("nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "beegfs",
                       "fuse.sshfs", "9p")
LOCK_KIND = "auto"  # set from cache.lock for the process (set_lock_kind)


def set_lock_kind(kind: str) -> None:
    global LOCK_KIND
    LOCK_KIND = kind


@functools.lru_cache(maxsize=64)
def _mount_type(folder: str) -> str:
    """The filesystem type of the mount holding `folder` (Linux /proc/self/mounts)."""
    try:
        mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return ""
    best, kind = "", ""
    for fields in mounts:
        point = fields[1].replace("\\040", " ")
        if (folder == point or folder.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def lock_kind(path: Path) -> str:
    if LOCK_KIND != "auto":
        return LOCK_KIND
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return "create" if _mount_type(os.path.realpath(folder)) in NETWORK_FILESYSTEMS else "os"


class CreateLock:
    """A lock file created atomically (see the module's docstring)."""
    HEARTBEAT_S = 5.0
    STALE_S = 30.0
    _held: set = set()
    _beating: threading.Thread | None = None
    _guard = threading.Lock()

    def __init__(self, path: Path):
        self.path = path
        self._seen: tuple[float, float] | None = None  # (the holder's mtime, when we first saw it)

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                self._break_if_stale()
                if time.monotonic() >= deadline:
                    raise Timeout(str(self.path)) from None
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())) or 0.01)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{socket.gethostname()} {os.getpid()}\n")
            self._hold()
            return

    def release(self) -> None:
        with CreateLock._guard:
            CreateLock._held.discard(self)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _break_if_stale(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return
        now = time.monotonic()
        if self._seen is None or self._seen[0] != mtime:
            self._seen = (mtime, now)  # the holder is alive (or we just started watching)
            return
        if now - self._seen[1] < self.STALE_S:
            return
        stale = self.path.with_name(f"{self.path.name}.stale-{secrets.token_hex(4)}")
        with contextlib.suppress(OSError):  # another waiter broke it first
            os.rename(self.path, stale)
            os.unlink(stale)
        self._seen = None

    def _hold(self) -> None:
        with CreateLock._guard:
            CreateLock._held.add(self)
            if CreateLock._beating is None or not CreateLock._beating.is_alive():
                CreateLock._beating = threading.Thread(target=CreateLock._heartbeat, name="lock-heartbeat",
                                                       daemon=True)
                CreateLock._beating.start()

    @staticmethod
    def _heartbeat() -> None:
        while True:
            time.sleep(CreateLock.HEARTBEAT_S)
            with CreateLock._guard:
                held = list(CreateLock._held)
            for lock_ in held:
                with contextlib.suppress(OSError):
                    os.utime(lock_.path)


def lock(path: str | Path):
    """The lock on `path` (not yet acquired), of the kind its filesystem needs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return CreateLock(path) if lock_kind(path) == "create" else FileLock(str(path))


def try_lock(path: str | Path):
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

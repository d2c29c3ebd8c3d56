"""Atomic file writes and inter-process locks: every write of shared state
(cache entries, checkpoints, ONNX exports, memos, run files) goes through here.

Files are created with mode 0666 minus the umask, as open() makes them (not
0600 as mkstemp does), so a group sharing a cache or a run folder can read them.

Locks come in two kinds (cache.lock; `auto` picks by filesystem):
- "os": filelock's OS lock (flock), released by the kernel when its holder
  dies. Right on local disks; not honoured by every network filesystem.
- "create": a lock file made with O_CREAT|O_EXCL, which is atomic on NFS (v3
  and later), Lustre and GPFS. Its holder rewrites the file's content while it
  holds it; a waiter that sees the content unchanged for STALE_S seconds of its
  own clock (no clock skew between machines matters) takes the holder for
  dead and breaks the lock (CreateLock says how, without ever removing a live one).
  The same protocol holds the cache's locks in a bucket, objects made by
  conditional writes (runner/cache/remote.py: ObjectLock).
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
    tmp = temporary_beside(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temporary_beside(path: Path) -> Path:
    """A new name in `path`'s folder for a file that becomes `path` by a rename:
    short and of fixed length (21 bytes), so any name the file system takes
    for `path` has a temporary one it takes too."""
    return path.with_name(f".{secrets.token_hex(8)}.tmp")


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
    """A lock file created atomically (see the module's docstring).

    The holder writes its token and a beat count into the file, and rewrites
    it every HEARTBEAT_S: waiters judge liveness by the file's content, read
    by open() (NFS's close-to-open consistency makes that fresh, where cached
    attributes such as the mtime may not be). A waiter that sees the same
    content for STALE_S seconds of its own clock breaks the lock, under a
    second create-lock (`<lock>.break`), and only if the file still holds the
    content it judged stale: so a waiter can never remove a lock that another
    waiter has just taken."""
    HEARTBEAT_S = 5.0
    STALE_S = 30.0
    _held: set = set()
    _beating: threading.Thread | None = None
    _guard = threading.Lock()

    def __init__(self, path: Path):
        self.path = path
        self.token = f"{socket.gethostname()} {os.getpid()} {secrets.token_hex(8)}"
        self.beats = 0
        self._seen: dict[Path, tuple[str | None, float]] = {}  # file -> (its content, when we first saw it)
        # A beat and the release never interleave (a beat after the release would make
        # the lock again); the heartbeat's requests hold no lock but this one's.
        self._mutex = threading.Lock()

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._create(self.path, self._content()):
            self._break_if_stale()
            if time.monotonic() >= deadline:
                raise Timeout(str(self.path))
            time.sleep(min(self.POLL_S, max(0.0, deadline - time.monotonic())) or 0.01)
        self._hold()

    def release(self) -> None:
        self.forget()  # no heartbeat rewrites it from here on
        if self._read(self.path) == self._content():  # never remove a lock that is no longer ours
            self._remove(self.path)

    def forget(self) -> None:
        """No heartbeat rewrites it from here on (one under way finishes first)."""
        with self._mutex, CreateLock._guard:
            CreateLock._held.discard(self)

    def _content(self) -> str:
        return f"{self.token} {self.beats}\n"

    def beat(self) -> None:
        """Show the holder is alive: new content (the beat count)."""
        with self._mutex:
            if self not in CreateLock._held:
                return  # released meanwhile
            if self._read(self.path) != self._content():
                return  # broken by a waiter that took us for dead: do not re-create it
            self.beats += 1
            with contextlib.suppress(OSError):
                self._write(self.path, self._content())

    # -- where the lock lives: a file (another kind of store overrides these) --
    POLL_S = 0.2

    def _create(self, path, content: str) -> bool:
        """Create `path` holding `content`, atomically; False when it exists."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(content)
        return True

    def _read(self, path) -> str | None:
        return _read(path)

    def _write(self, path, content: str) -> None:
        with open(path, "w") as f:
            f.write(content)

    def _remove(self, path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _breaker(self):
        return self.path.with_name(self.path.name + ".break")

    def _stale(self, path, after: float) -> str | None:
        """The content `path` has held unchanged for `after` seconds (None: alive, or gone)."""
        content, now = self._read(path), time.monotonic()
        if content is None:
            self._seen.pop(path, None)
            return None
        seen = self._seen.get(path)
        if seen is None or seen[0] != content:
            self._seen[path] = (content, now)  # alive (or we just started watching)
            return None
        return content if now - seen[1] >= after else None

    def _break_if_stale(self) -> None:
        stale = self._stale(self.path, self.STALE_S)
        if stale is None:
            return
        breaker = self._breaker()
        if not self._create(breaker, self.token + "\n"):
            # another waiter is breaking it (for microseconds), or died doing so
            dead = self._stale(breaker, 4 * self.STALE_S)
            if dead is not None and self._read(breaker) == dead:
                self._remove(breaker)
            return
        try:
            if self._read(self.path) == stale:  # still the dead holder's, not a new holder's
                self._remove(self.path)
        finally:
            self._remove(breaker)
        self._seen.pop(self.path, None)

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
            CreateLock.beat_all()

    @staticmethod
    def beat_all() -> None:
        """One beat of every lock held. The guard is taken only to copy the set: a
        lock taken or released meanwhile never waits on the beats' reads and
        writes (a bucket's leases: two requests each)."""
        with CreateLock._guard:
            held = list(CreateLock._held)
        for lock_ in held:
            lock_.beat()


def _read(path: Path) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return ""


@functools.lru_cache(maxsize=4096)
def _folder_lock_kind(folder: Path, asked: str) -> str:
    return lock_kind(folder / "x")  # a mount's filesystem does not change within a run


def lock(path: str | Path):
    """The lock on `path` (not yet acquired), of the kind its filesystem needs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return CreateLock(path) if _folder_lock_kind(path.parent, LOCK_KIND) == "create" else FileLock(str(path))


def try_lock(path: str | Path):
    """The lock on `path`, acquired, or None if another process holds it."""
    held = lock(path)
    try:
        held.acquire(timeout=0)
    except Timeout:
        return None
    return held


def locked(path: str | Path, what: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S):
    """Hold the lock on `path`, waiting at most `timeout_s` for another holder."""
    return holding(lock(path), what, path, timeout_s)


@contextlib.contextmanager
def holding(held, what: str, where, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock `held` (not yet acquired; it lives at `where`), waiting at most `timeout_s`."""
    try:
        held.acquire(timeout=timeout_s)
    except Timeout:
        raise LockTimeout(
            f"waited {timeout_s:g} s for another process to finish {what} (lock {where}): if that "
            "process is hung, stop it and re-run; if it is slow, raise cache.lock_timeout_s") from None
    try:
        yield
    finally:
        held.release()

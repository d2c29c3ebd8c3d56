"""The stage cache in a bucket (cache.dir=s3://BUCKET/PREFIX): the folder
cache's entries, keys, checksums and layout, one object per entry under
<prefix>/stages/, read and written through runner.objects.

- An entry is written whole by one PUT (a reader sees all of it or nothing)
  and verified on read: a damaged one is dropped with a warning and recomputed.
- The reads and writes of a batch go concurrently (objects.CONCURRENCY at a
  time), so many small entries do not wait on one round trip each; and a
  stage's round trips overlap its models: while a batch computes, the next
  one is claimed (leases taken, lookups again) and the last one written
  (`overlapped`).
- Two jobs wanting one entry: its lock is an object made with a conditional
  write (If-None-Match: *), so exactly one job creates it; its holder
  rewrites it while computing (a lease), and a waiter that sees it unchanged
  for cache.lock_stale_s of its own clock takes the holder for dead and breaks
  it, as atomic.CreateLock does with lock files. At worst (a store without
  conditional writes, a holder paused past its lease) an entry is computed
  twice and written twice with the same key and equally valid bytes: never a
  corrupt one.
- Releases: a batch's leases that are certainly still ours go in one
  DeleteObjects request.
- Last use, for `gc`: an entry read more than a day after it was last marked
  is marked again (its bytes written again): gc orders by use to within a
  day, for one request per entry per day."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from runner import atomic, objects
from runner.cache.store import SUFFIX, EntryKey, Store, Stored, entry_bytes, header_metadata

log = logging.getLogger(__name__)

MARK_USE_AFTER_S = 86400.0
HEADER_BYTES = 1 << 16  # an entry's safetensors header (its metadata) is well within this


class ObjectLock(atomic.CreateLock):
    """atomic.CreateLock's protocol on objects: create = a conditional PUT."""
    POLL_S = 0.5  # a waiter's look costs a request

    def __init__(self, bucket: objects.Bucket, key: str):
        super().__init__(key)
        self.bucket = bucket
        self.written = float("-inf")  # when this holder last wrote the lock (its own clock)

    def _create(self, path, content: str) -> bool:
        made = self.bucket.put(path, content.encode(), only_new=True)
        if made and path == self.path:
            self.written = time.monotonic()
        return made

    def certainly_ours(self) -> bool:
        """No waiter breaks a lease younger than STALE_S: one written less than half
        of that ago is still ours."""
        return time.monotonic() - self.written < self.STALE_S / 2

    def release(self) -> None:
        """As CreateLock's, without reading the lock first while it is certainly
        still ours (one request fewer per computed entry)."""
        if self.certainly_ours():
            self.forget()
            self._remove(self.path)
        else:
            super().release()

    def _read(self, path) -> str | None:
        found = self.bucket.get(path)
        return None if found is None else found[0].decode(errors="replace")

    def _write(self, path, content: str) -> None:
        self.bucket.put(path, content.encode())
        if path == self.path:
            self.written = time.monotonic()

    def _remove(self, path) -> None:
        self.bucket.delete([path])

    def _breaker(self):
        return self.path + ".break"

    def beat(self) -> None:
        with contextlib.suppress(objects.StorageError):  # a missed beat; the heartbeat thread goes on
            super().beat()


class ObjectStore(Store):
    """Store's interface on a bucket prefix (`url` is s3://BUCKET/PREFIX/stages)."""

    def __init__(self, url: str, lock_timeout_s: float = atomic.DEFAULT_LOCK_TIMEOUT_S):
        self.location = objects.Location.of(url)
        self._bucket = objects.Bucket(self.location.bucket)
        self.root = self.location.url()
        self.lock_timeout_s = lock_timeout_s
        self.read_only = False
        # No bucket, no credentials, refused, unreachable: one line at the first
        # use, before any model runs; checked meanwhile (a round trip, and
        # botocore's start when credentials come from a profile), while the models load.
        self._failed: objects.StorageError | None = None
        self._checking: threading.Thread | None = threading.Thread(target=self._check, name="bucket-check",
                                                                   daemon=True)
        self._checking.start()
        self._beside: ThreadPoolExecutor | None = None  # claims ahead and writes behind the models

    def _check(self) -> None:
        try:
            self._bucket.check(self.location.prefix)
        except objects.StorageError as err:
            self._failed = err

    @property
    def bucket(self) -> objects.Bucket:
        """The bucket, once it is known to be usable."""
        if self._checking is not None:
            self._checking.join()
            self._checking = None
        if self._failed is not None:
            raise self._failed
        return self._bucket

    def path(self, key: EntryKey) -> str:
        return self.location.key(key.stage, key.input[:2], key.input, f"{key.digest}{SUFFIX}")

    def _lock_key(self, key: EntryKey) -> str:
        return self.location.key(".locks", key.digest[:2], f"{key.digest}.lock")

    def overlapped(self, fn, *args) -> Future:
        if self._beside is None:  # a claim ahead, and a write behind while the one before ends
            self._beside = ThreadPoolExecutor(3, thread_name_prefix="cache-beside")
        return self._beside.submit(fn, *args)

    # -- locks ---------------------------------------------------------------
    def try_lock(self, key: EntryKey):
        if self.read_only:
            return atomic.NoLock()
        held = ObjectLock(self.bucket, self._lock_key(key))
        try:
            held.acquire(timeout=0)
        except atomic.Timeout:
            return None
        return held

    def try_lock_many(self, keys: list[EntryKey]) -> list:
        return objects.concurrently(self.try_lock, keys)

    def release_many(self, locks: list) -> None:
        """Leases certainly still ours go in one DeleteObjects request; the others
        are released one by one (read first: never remove a lease that is no longer ours)."""
        mine = [held for held in locks if isinstance(held, ObjectLock) and held.certainly_ours()]
        for held in mine:
            held.forget()
        if mine:
            self.bucket.delete([held.path for held in mine])
        objects.concurrently(lambda held: held.release(), [held for held in locks if held not in mine])

    def wait_many(self, keys: list[EntryKey]) -> list[dict[str, np.ndarray] | None]:
        """All at once: a lease left by a job that died is judged stale on the
        waiter's own clock (cache.lock_stale_s), so one wait after another would add
        that up for each lease left behind. Threads of their own: the waits must not
        take the request pool from the writes that end the holders' leases."""
        if len(keys) < 2:
            return super().wait_many(keys)
        with ThreadPoolExecutor(min(len(keys), objects.CONCURRENCY), thread_name_prefix="cache-wait") as pool:
            return list(pool.map(self._after_holder, keys))

    def locked(self, key: EntryKey):
        if self.read_only:
            return atomic.NoLock()
        lock_key = self._lock_key(key)
        return atomic.holding(ObjectLock(self.bucket, lock_key), f"the {key.stage} entry {key.digest[:12]}",
                              self.location.url(lock_key), self.lock_timeout_s)

    # -- entries -------------------------------------------------------------
    def get(self, key: EntryKey) -> dict[str, np.ndarray] | None:
        path = self.path(key)
        found = self.bucket.get(path)
        if found is None:
            return None
        data, written = found
        arrays = self._verified(path, data)
        if arrays is not None and not self.read_only and \
                time.time() - written.timestamp() > MARK_USE_AFTER_S:
            self.bucket.touch(path, data)
        return arrays

    def get_many(self, keys: list[EntryKey]) -> list[dict[str, np.ndarray] | None]:
        return objects.concurrently(self.get, keys)

    def put(self, key: EntryKey, arrays: dict[str, np.ndarray], label: str = "") -> None:
        if self.read_only:
            return
        try:
            self.bucket.put(self.path(key), entry_bytes(key, arrays, label))
        except objects.StorageError as err:
            if not err.refused:
                raise
            self._become_read_only("it refuses this job's writes")

    def put_many(self, entries: list[tuple[EntryKey, dict[str, np.ndarray], str]]) -> None:
        objects.concurrently(lambda entry: self.put(*entry), entries)

    def _drop(self, path: str, why: str) -> None:
        log.warning("cache entry %s is damaged (%s): recomputing it", self.location.url(path), why)
        if not self.read_only:
            try:
                self.bucket.delete([path])
            except objects.StorageError:
                pass  # the recomputed entry replaces it
        return None

    # -- inspection ----------------------------------------------------------
    def siblings(self, key: EntryKey) -> list[dict]:
        folder = self.path(key).rsplit("/", 1)[0] + "/"
        found = [o for o in self.bucket.list(folder, recursive=False) if o.key.endswith(SUFFIX)]
        return [m for m in self.metadata([Stored(o.key, key.stage, o.size, 0.0) for o in found]) if m]

    def entries(self) -> Iterator[Stored]:
        start = self.location.key() + "/" if self.location.prefix else ""
        for found in self.bucket.list(start):
            relative = found.key[len(start):]
            if found.key.endswith(SUFFIX) and not relative.startswith(".locks/"):
                yield Stored(found.key, relative.split("/", 1)[0], found.size, found.modified.timestamp())

    def metadata(self, entries: list[Stored]) -> list[dict]:
        def read(entry: Stored) -> dict:
            found = self.bucket.get(str(entry.where), first=HEADER_BYTES)
            try:
                return header_metadata(found[0]) if found else {}
            except ValueError:
                return {}
        return objects.concurrently(read, entries)

    def remove(self, entries: list[Stored]) -> None:
        self.bucket.delete([str(e.where) for e in entries])


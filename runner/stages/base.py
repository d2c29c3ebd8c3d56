"""What every step shares: the per-item Record that flows through the chain,
per-stage statistics, and CachedStage, the cache engine: it looks each unit of
work up in the cache, computes only the misses (in batches, under per-entry
locks) and explains misses in dry runs. It knows no step by name; the stages
built on it (stages/model.py, stages/visualize.py) say what a unit is.

A cached stage declares what its results are computed from: each unit's
`input`, and, once for the run, `reads()` (runner/stages/reads.py: files by
content, parameters, code, libraries, backend). The key is made from them in
one place, EntryKey.of; the manifest, replay and merges read the same
declaration."""
from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.blame import InputsFailed
from runner.cache import EntryKey, Store
from runner.inputs import BadItem, Item
from runner.stages.reads import Reads


@dataclass
class Record:
    """One item and everything computed for it so far."""
    item: Item
    boxes: np.ndarray | None = None                   # kept boxes (M, 4) xyxy
    box_scores: np.ndarray | None = None              # (M,)
    box_angles: np.ndarray | None = None              # (M,) radians: the boxes are bounds of rotated regions (palms)
    poses: list[dict | None] | None = None            # one per box; None where not known yet
    overlay: bytes | None = None                      # encoded overlay image
    track_ids: list[int] | None = None                # one per box, within its video (track step)
    box_source: str | None = None                     # "previous frame" (detect.every), "pending" (dry run)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def set_pose(self, index: int, pose: dict) -> None:
        if self.poses is None:
            self.poses = [None] * len(self.boxes)
        self.poses[index] = pose

    def poses_known(self) -> bool:
        """Every box has its pose (trivially so with no boxes)."""
        return self.boxes is not None and (len(self.boxes) == 0 or (
            self.poses is not None and None not in self.poses))


@dataclass
class StageStats:
    units: int = 0      # units of work seen (images, frames or boxes)
    hits: int = 0       # found in the cache
    computed: int = 0   # run through the model (or renderer)
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)  # dry run: why misses would compute
    blocked: int = 0    # dry run: items waiting for an upstream stage

    def as_dict(self) -> dict:
        return {"units": self.units, "cache_hits": self.hits, "computed": self.computed,
                "seconds": round(self.seconds, 3), **({"would_compute": dict(self.reasons)}
                                                     if self.reasons else {}),
                **({"blocked": self.blocked} if self.blocked else {})}


class Stage:
    """A step of a recipe. `run` gets the records of one chunk of items."""
    name: str = ""

    def __init__(self, ctx):
        self.ctx = ctx
        self.stats = StageStats()

    def setup(self) -> None:
        pass

    def run(self, records: list[Record]) -> None:
        raise NotImplementedError

    def plan(self, records: list[Record]) -> None:
        """Dry run: count what `run` would do, without running a model."""

    def end(self) -> None:
        """After the last item (not after an interruption)."""

    def finish(self) -> None:
        """Always, last: release what setup() took."""

    def manifest_fields(self) -> dict:
        """What this stage adds to the run's manifest."""
        return {}

    def warnings(self) -> list[str]:
        """Lines the summary and the manifest's `warnings` show (what did not go as asked)."""
        return []

    def manifest_reads(self) -> dict | None:
        """What a stage whose results are cached computed them from (runner/stages/reads.py)."""
        return None


def _decoded(item) -> None:
    item.image()  # kept on the item; the future holds nothing


@dataclass
class Unit:
    record: Record
    input: Any               # what this unit consumes, as plain data (hashed into its key)
    slot: int | None = None  # the box's index, for per-box stages


class CachedStage(Stage):
    """A stage whose results are cache entries. Subclasses say which records
    they can take yet (`accepts`), what a unit is (`units`, no side effects),
    what every result of the run is computed from (`reads`), how a batch of
    units is computed, and how results attach to records."""
    code_version = 1
    batch_size = 16

    def __init__(self, ctx):
        super().__init__(ctx)
        self._ahead: dict = {}  # id(item) -> its decoding, started while the previous batch computed
        self._writing = None  # the last batch's write, done while the next ones compute (Store.overlapped)
        self._declared: Reads | None = None

    def accepts(self, record: Record) -> bool:
        """Whether the record's inputs for this stage are known (in a dry run an
        upstream miss leaves them unknown)."""
        return True

    def units(self, records: list[Record]) -> list[Unit]:
        raise NotImplementedError

    def reads(self) -> Reads:
        """What every result of this run's stage is computed from (besides each
        unit's own input): runner/stages/reads.py. Asked once, after setup."""
        raise NotImplementedError

    def declared(self) -> Reads:
        if self._declared is None:
            self._declared = self.reads()
        return self._declared

    def key_parts(self) -> dict:
        """The run-wide components of every key (a merge: the library versions the shards recorded)."""
        return self.declared().key_parts(self.ctx.recorded_libs(self.name))

    def manifest_reads(self) -> dict | None:
        """The manifest's record of what this stage read (None: nothing could be declared yet)."""
        if self.ready() is not None:
            return None
        return self.declared().as_manifest(self.ctx.recorded_libs(self.name))

    def compute(self, units: list[Unit]) -> list[dict[str, np.ndarray]]:
        raise NotImplementedError

    def attach(self, units: list[Unit], results: list[dict[str, np.ndarray]]) -> None:
        raise NotImplementedError

    def invalid(self, result: dict[str, np.ndarray]) -> str | None:
        """Why a computed result must not be kept (None: it is sound)."""
        return None

    def label(self) -> str:
        return self.name

    def ready(self) -> str | None:
        """Why no key can be made yet (dry run without the checkpoint), if so."""
        return None

    # -- engine --------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.ctx.store

    def waits(self, record: Record) -> bool:
        """Whether a record this stage does not take yet is waiting for an upstream stage (dry runs)."""
        return not self.accepts(record)

    def _units(self, records: list[Record]) -> list[Unit]:
        ok = [r for r in records if r.ok]
        ready = [r for r in ok if self.accepts(r)]
        self.stats.blocked += sum(1 for r in ok if r not in ready and self.waits(r))
        units = self.units(ready)
        self.stats.units += len(units)
        return units

    def _lookup(self, key: EntryKey):
        return None if self.ctx.refresh else self.store.get(key)

    def _lookup_many(self, keys: list[EntryKey]) -> list:
        """A batch's lookups at once (a bucket answers them concurrently)."""
        return [None] * len(keys) if self.ctx.refresh else self.store.get_many(keys)

    def run(self, records: list[Record]) -> None:
        start = time.perf_counter()
        units = self._units(records)
        parts = self.key_parts()
        keys = [EntryKey.of(self.name, u.input, **parts) for u in units]
        results: list = self._lookup_many(keys)
        todo = [i for i, found in enumerate(results) if found is None]
        self.stats.hits += len(units) - len(todo)
        batches = [todo[at:at + self.batch_size] for at in range(0, len(todo), self.batch_size)]
        waiting = self._compute_claimed(batches, units, keys, results)
        self._ahead.clear()
        # another process held these: wait for it, then reuse what it wrote
        for i, found in zip(waiting, self.store.wait_many([keys[i] for i in waiting])):
            if found is not None:
                results[i] = found
                self.stats.hits += 1
                continue
            with self.store.locked(keys[i]):  # it stopped before writing it: compute it here
                results[i] = self.store.get(keys[i])
                if results[i] is None:
                    self.store.put_many(self._compute_batch([i], units, keys, results))
                else:
                    self.stats.hits += 1
        done = [(u, r) for u, r in zip(units, results) if r is not None]
        self.attach([u for u, _ in done], [r for _, r in done])
        self.stats.seconds += time.perf_counter() - start

    def _compute_claimed(self, batches: list[list[int]], units, keys, results) -> list[int]:
        """Compute each batch's units whose locks we get; return the others (another
        process computes them). A store with round trips (a bucket) claims the next
        batch while a batch computes, and writes a batch while the next one
        computes (Store.overlapped): one claim ahead, and one write behind per
        stage (across chunks; `end` and `finish` wait for the last), so memory
        stays bounded and a failed write stops the run a batch later at most."""
        claiming = self.store.overlapped(self._claim, batches[0], keys) if batches else None
        waiting: list[int] = []
        try:
            for at, batch in enumerate(batches):
                held, taken, found = claiming.result()
                claiming = None
                waiting += taken
                try:
                    if at + 1 < len(batches):  # the next batch's images decode while this one's model runs
                        self._decode_ahead([units[i].record for i in batches[at + 1]])
                        claiming = self.store.overlapped(self._claim, batches[at + 1], keys)
                    mine = []
                    for (i, _), result in zip(held, found):
                        results[i] = result
                        if result is None:
                            mine.append(i)
                        else:
                            self.stats.hits += 1
                    entries = self._compute_batch(mine, units, keys, results) if mine else []
                except BaseException:
                    self.store.release_many([lock for _, lock in held])
                    raise
                # handed to the writer at once (an interruption cannot come between), then the one before waited for
                behind, self._writing = self._writing, self.store.overlapped(self._write, entries,
                                                                             [lock for _, lock in held])
                if behind is not None:
                    behind.result()
        except BaseException:
            if claiming is not None:  # claimed ahead: let go
                with contextlib.suppress(Exception):
                    self.store.release_many([lock for _, lock in claiming.result()[0]])
            raise
        return waiting

    def _claim(self, batch: list[int], keys) -> tuple[list, list[int], list]:
        """(the (index, lock)s we got, the indices another process holds, the held
        entries' lookups again: finished by another process since our first lookup?)"""
        locks = self.store.try_lock_many([keys[i] for i in batch])
        held = [(i, lock) for i, lock in zip(batch, locks) if lock is not None]
        try:
            found = self._lookup_many([keys[i] for i, _ in held])
        except BaseException:
            self.store.release_many([lock for _, lock in held])
            raise
        return held, [i for i, lock in zip(batch, locks) if lock is None], found

    def _write(self, entries: list, locks: list) -> None:
        try:
            self.store.put_many(entries)
        finally:
            self.store.release_many(locks)

    def _written(self) -> None:
        """Wait for the write behind, if any (its error stops the run here)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def end(self) -> None:
        start = time.perf_counter()
        self._written()
        self.stats.seconds += time.perf_counter() - start

    def finish(self) -> None:
        """Also after a failure or an interruption: what was computed is written."""
        with contextlib.suppress(Exception):
            self._written()

    def may_compute(self) -> bool:
        """Whether misses may be computed (cache.no_models: a merge reads only)."""
        return True

    def _compute_batch(self, indices: list[int], units, keys, results) -> list[tuple]:
        """Compute the units of `indices` into `results`; return the cache entries to store."""
        if not self.may_compute():
            for i in indices:
                units[i].record.error = (f"{self.name} result not in the cache, and cache.no_models=true: the job "
                                         "meant to compute it did not finish; run it again")
            return []
        self._decode([units[i].record for i in indices])
        indices = [i for i in indices if units[i].record.ok]
        if not indices:
            return []
        done = []
        for i, out in self._compute_isolated(indices, units):
            wrong = self.invalid(out)
            if wrong:  # never cached, never written: the item fails, the others go on
                units[i].record.error = f"{self.name} of {units[i].record.item.source}: {wrong}"
            else:
                done.append((i, out))
        for i, out in done:
            results[i] = out
            self.stats.computed += 1
        return [(keys[i], out, self.label()) for i, out in done]

    def _compute_isolated(self, indices: list[int], units) -> list[tuple[int, dict]]:
        """compute() on a batch. A unit whose own input the model's
        pre-processing cannot take (a 5000x1 image: runner.blame.InputsFailed)
        fails its item, and the others are computed without it; any other
        exception (the network, out of memory, a bug) stops the run, whatever
        the batch's size."""
        while indices:
            try:
                return list(zip(indices, self.compute([units[i] for i in indices])))
            except InputsFailed as failed:
                for at, err in failed.failures.items():
                    self._fail(units[indices[at]].record, err)
                indices = [i for at, i in enumerate(indices) if at not in failed.failures]
        return []

    def _fail(self, record: Record, err: Exception) -> None:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        try:
            size = "x".join(str(v) for v in record.item.image().shape[1::-1])
        except BadItem:
            size = "?"
        kind = type(err).__qualname__ if type(err).__module__ == "builtins" else \
            f"{type(err).__module__}.{type(err).__qualname__}"
        record.error = (f"{self.name} cannot process {record.item.source} ({size} px): {kind}: "
                        f"{lines[-1] if lines else ''}; the other inputs are processed")

    def _decode_ahead(self, records: list[Record]) -> None:
        for record in records:
            item = record.item
            if item._image is None and item.data is not None and id(item) not in self._ahead:
                self._ahead[id(item)] = self.ctx.pool.submit(_decoded, item)

    def _decode(self, records: list[Record]) -> None:
        """Decode the records' images (in parallel); a corrupt one fails its record."""
        from runner.inputs import decode_all
        records = list({id(r): r for r in records}.values())
        for record in records:  # decoded ahead: wait for it (its error, if any, comes again below)
            started = self._ahead.pop(id(record.item), None)
            if started is not None:
                started.exception()
        try:
            decode_all([r.item for r in records], self.ctx.pool)
        except BadItem:
            for record in records:
                try:
                    record.item.image()
                except BadItem as err:
                    record.error = str(err)

    # -- dry run -------------------------------------------------------------
    def plan(self, records: list[Record]) -> None:
        units = self._units(records)
        not_ready = self.ready()
        if not_ready:
            self.stats.reasons[not_ready] += len(units)
            return
        parts = self.key_parts()
        found_units, results = [], []
        for unit in units:
            key = EntryKey.of(self.name, unit.input, **parts)
            found = self._lookup(key)
            if found is None:
                self.stats.reasons["refresh" if self.ctx.refresh else self.store.explain_miss(key)] += 1
            else:
                self.stats.hits += 1
                found_units.append(unit)
                results.append(found)
        self.attach(found_units, results)

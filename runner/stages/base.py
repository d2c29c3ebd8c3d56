"""What every step shares: the per-item Record that flows through the chain,
per-stage statistics, and CachedStage, which looks each unit of work up in the
cache, computes only the misses (in batches, under per-entry locks) and
explains misses in dry runs."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from filelock import Timeout

from runner.cache import EntryKey, Store
from runner.hashing import sha256_json
from runner.inputs import BadItem, Item
from runner.versions import versions


@dataclass
class Record:
    """One item and everything computed for it so far."""
    item: Item
    detections: dict[str, np.ndarray] | None = None  # raw detector output (before bbox_thr)
    boxes: np.ndarray | None = None                  # kept boxes (M, 4) xyxy
    box_scores: np.ndarray | None = None             # (M,)
    poses: list[dict[str, np.ndarray]] | None = None  # one per instance
    overlay: bytes | None = None                     # encoded overlay image
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


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

    def finish(self) -> None:
        pass


@dataclass
class Unit:
    record: Record
    input: str          # hash of the unit's input (item content, + box)
    payload: Any = None  # what compute needs besides the record (e.g. the box)


class CachedStage(Stage):
    """A stage whose results are cache entries: subclasses say what a unit is
    (`units`), how its key is made (`key_parts`, fixed for the run), how a batch
    of units is computed, and how results attach to records."""
    code_version = 1
    batch_size = 16
    needs_images = True

    def key_parts(self) -> tuple[str, str, str]:
        """(model, params, code) components of every key of this run."""
        raise NotImplementedError

    def units(self, records: list[Record]) -> list[Unit]:
        raise NotImplementedError

    def compute(self, units: list[Unit]) -> list[dict[str, np.ndarray]]:
        raise NotImplementedError

    def attach(self, units: list[Unit], results: list[dict[str, np.ndarray]]) -> None:
        raise NotImplementedError

    def label(self) -> str:
        return self.name

    def ready(self) -> str | None:
        """Why no key can be made yet (dry run without the checkpoint), if so."""
        return None

    # -- engine --------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.ctx.store

    def _key(self, unit: Unit, parts) -> EntryKey:
        model, params, code = parts
        return EntryKey(self.name, unit.input, model, params, code)

    def run(self, records: list[Record]) -> None:
        start = time.perf_counter()
        units = self.units([r for r in records if r.ok])
        parts = self.key_parts()
        keys = [self._key(u, parts) for u in units]
        results: list = [None] * len(units)
        refresh = self.ctx.refresh
        todo = []
        for i, key in enumerate(keys):
            found = None if refresh else self.store.get(key)
            if found is None:
                todo.append(i)
            else:
                results[i] = found
        self.stats.units += len(units)
        self.stats.hits += len(units) - len(todo)
        waiting = []
        for start_at in range(0, len(todo), self.batch_size):
            waiting += self._compute_locked(todo[start_at:start_at + self.batch_size],
                                            units, keys, results)
        for i in waiting:  # another process held these: wait for it, then reuse
            with self.store.lock(keys[i]):
                found = self.store.get(keys[i])
                if found is None:
                    self._compute_batch([i], units, keys, results)
                else:
                    results[i] = found
                    self.stats.hits += 1
        done = [(u, r) for u, r in zip(units, results) if r is not None]
        self.attach([u for u, _ in done], [r for _, r in done])
        self.stats.seconds += time.perf_counter() - start

    def _compute_locked(self, batch: list[int], units, keys, results) -> list[int]:
        """Compute the units of `batch` whose locks we get; return the others."""
        held, waiting = [], []
        for i in batch:
            lock = self.store.lock(keys[i])
            try:
                lock.acquire(timeout=0)
            except Timeout:
                waiting.append(i)
                continue
            held.append((i, lock))
        try:
            mine = []
            for i, _ in held:  # finished by another process since our lookup?
                found = None if self.ctx.refresh else self.store.get(keys[i])
                if found is None:
                    mine.append(i)
                else:
                    results[i] = found
                    self.stats.hits += 1
            if mine:
                self._compute_batch(mine, units, keys, results)
        finally:
            for _, lock in held:
                lock.release()
        return waiting

    def _compute_batch(self, indices: list[int], units, keys, results) -> None:
        batch = [units[i] for i in indices]
        if self.needs_images:
            batch = self._decodable(batch)
            indices = [i for i in indices if units[i].record.ok]
        if not batch:
            return
        outputs = self.compute(batch)
        for i, out in zip(indices, outputs):
            self.store.put(keys[i], out, label=self.label())
            results[i] = out
        self.stats.computed += len(batch)

    def _decodable(self, batch: list[Unit]) -> list[Unit]:
        """Decode the batch's images (in parallel); a corrupt one fails its record."""
        from runner.inputs import decode_all
        items = {id(u.record): u.record for u in batch}
        try:
            decode_all([r.item for r in items.values()], self.ctx.pool)
        except BadItem:
            for record in items.values():
                try:
                    record.item.image()
                except BadItem as err:
                    record.error = str(err)
        return [u for u in batch if u.record.ok]

    # -- dry run -------------------------------------------------------------
    def plan(self, records: list[Record]) -> None:
        units = self.units([r for r in records if r.ok])
        self.stats.units += len(units)
        not_ready = self.ready()
        if not_ready:
            self.stats.reasons[not_ready] += len(units)
            return
        parts = self.key_parts()
        results, found_units = [], []
        for unit in units:
            key = self._key(unit, parts)
            found = None if self.ctx.refresh else self.store.get(key)
            if found is None:
                reason = "refresh" if self.ctx.refresh else self.store.explain_miss(key)
                self.stats.reasons[reason] += 1
            else:
                self.stats.hits += 1
                results.append(found)
                found_units.append(unit)
        self.attach(found_units, results)


class ModelStage(CachedStage):
    """A cached stage that runs a registry model (detect, pose): the key is the
    checkpoint's sha256, the resolved model config, and the code, backend and
    library versions; `self.name` is also the config section and model role."""
    libs: tuple[str, ...] = ()

    def setup(self) -> None:
        self.cfg = self.ctx.cfg[self.name]
        self.entry = self.cfg.model
        self.batch_size = int(self.cfg.batch_size)

    def label(self) -> str:
        return str(self.entry.name)

    def code_parts(self) -> dict:
        """What identifies this stage's code in its keys (subclasses may add)."""
        return {"stage": self.name, "version": self.code_version,
                "backend": self.ctx.backend(self.name), "libs": versions(*self.libs)}

    def key_parts(self):
        from runner.models.loading import config_digest
        checkpoint = self.ctx.checkpoint(self.name)
        params = sha256_json({"config": config_digest(str(self.entry.config))})
        return checkpoint.sha256 if checkpoint else "", params, sha256_json(self.code_parts())

    def ready(self) -> str | None:
        return None if self.ctx.checkpoint(self.name) else "checkpoint not downloaded yet"

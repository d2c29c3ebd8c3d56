"""Gather a sharded sweep's jobs into one run folder:

    python -m runner.merge MULTIRUN_DIR

(done by itself at the end of a sweep whose jobs are shards). The merge is the
unsharded run over the shared cache with cache.no_models=true: every result
comes from the entries the shards computed, no model runs, and the files
(predictions, COCO results, overlays and videos, tracks, tables) are exactly
those one unsharded run writes. An item a shard did not finish fails in the
merged run with a line saying so; the merged manifest lists every shard's
manifest and names the shards that are incomplete."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from runner import atomic
from runner.errors import RunnerError
from runner.hashing import digest
from runner.jobs import Job, Outcome, collect

COMPLETE = ("ok", "failed")  # "failed": finished, some of its items could not be read


@dataclass
class Group:
    """The jobs of one unsharded run: the same overrides but shard.index."""
    count: int
    jobs: dict[int, Job] = field(default_factory=dict)  # shard index -> job

    def recorded(self) -> dict:
        """A finished shard's manifest: its resolved config (every shard's is the
        same but its index), device and backend (what the shards' keys were made with)."""
        for job in self.jobs.values():
            if job.manifest and job.manifest.get("config") and job.manifest.get("backend"):
                return job.manifest
        raise RunnerError("no shard of this run wrote a manifest (none started): re-run the sweep, then merge")

    def shards(self) -> list[dict]:
        return [{"index": i, "folder": str(self.jobs[i].folder) if i in self.jobs else None,
                 "status": self.jobs[i].status if i in self.jobs else "missing",
                 "manifest": str(self.jobs[i].folder / "manifest.json") if i in self.jobs and self.jobs[i].manifest
                 else None} for i in range(self.count)]

    def incomplete(self) -> list[int]:
        return [s["index"] for s in self.shards() if s["status"] not in COMPLETE]


def sharded_groups(outcome: Outcome) -> list[Group]:
    from runner.report import overrides
    groups: dict[str, Group] = {}
    for job in outcome.jobs:
        given = overrides(job)
        count = int(given.get("shard.count", 1))
        if count <= 1:
            continue
        key = digest(sorted((k, v) for k, v in given.items() if k != "shard.index"))
        group = groups.setdefault(key, Group(count))
        group.jobs[int(given.get("shard.index", 0))] = job
    return list(groups.values())


MODEL_STAGES = ("detect", "pose")  # what a merge reads and never computes (cache.no_models)


def recorded_libs(group: Group) -> dict[str, dict]:
    """The library versions the shards' model stages computed their entries
    with: the merge's keys for them are rebuilt with these, so a merge on a host
    with other versions (CPU submit host, another patch release) reads what the
    shards computed. Shards that disagree are named: their entries cannot be one run."""
    found: dict[str, dict[str, list[int]]] = {}
    for index, job in sorted(group.jobs.items()):
        stages = (job.manifest or {}).get("stages") or {}
        for stage in MODEL_STAGES:
            libs = ((stages.get(stage) or {}).get("reads") or {}).get("libs")
            if libs is not None:
                found.setdefault(stage, {}).setdefault(json.dumps(libs, sort_keys=True), []).append(index)
    for stage, variants in found.items():
        if len(variants) > 1:
            shown = "; ".join(f"shards {', '.join(map(str, ix))}: {', '.join(f'{k} {v}' for k, v in json.loads(libs).items())}"
                              for libs, ix in variants.items())
            raise RunnerError(f"the shards computed {stage} with other library versions ({shown}): re-run the "
                              "shards in one environment, then merge")
    return {stage: json.loads(next(iter(variants))) for stage, variants in found.items()}


def merge_group(group: Group, out_dir: Path):
    """The unsharded run over the shards' cache entries, in the shards'
    recorded environment: device, backend and the model stages' library
    versions, never re-decided on this host (a GPU cluster's shards merged on
    a CPU-only submit host), never refreshed."""
    from runner.pipeline import execute
    recorded = group.recorded()
    cfg = OmegaConf.create(recorded["config"])
    cfg.shard.count, cfg.shard.index = 1, 0
    cfg.output.dir, cfg.cache.no_models, cfg.cache.refresh, cfg.dry_run = str(out_dir), True, False, False
    try:
        result = execute(cfg, keep_records=False,
                         environment={"device": recorded["device"], "backend": recorded["backend"],
                                      "libs": recorded_libs(group)})
    except RunnerError as err:
        raise RunnerError(f"cannot merge the shards into {out_dir}: {err}") from None
    manifest = {**result.manifest, "merged_from": group.shards(), "incomplete_shards": group.incomplete()}
    atomic.write_json(out_dir / "manifest.json", manifest, indent=2)
    return result, manifest


@dataclass
class Merged:
    """One sharded run's merge: its folder, and its manifest or why it failed."""
    folder: Path
    manifest: dict | None = None
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.manifest is not None and not self.manifest["incomplete_shards"] and \
            self.manifest["status"] == "ok"

    def line(self) -> str:
        return f"error: {self.error}" if self.error else describe(self.folder, self.manifest)


def merge_all(outcome: Outcome) -> list[Merged]:
    """Merge every sharded run of a sweep (one failing does not stop the others;
    a dry run's shards computed nothing: there is nothing to merge)."""
    groups = [g for g in sharded_groups(outcome) if not any((j.manifest or {}).get("dry_run") for j in g.jobs.values())]
    merged = []
    for n, group in enumerate(groups):
        out = outcome.folder / ("merged" if len(groups) == 1 else f"merged-{n}")
        try:
            merged.append(Merged(out, merge_group(group, out)[1]))
        except RunnerError as err:
            merged.append(Merged(out, error=str(err)))
    return merged


def describe(out: Path, manifest: dict) -> str:
    shards, incomplete = manifest["merged_from"], manifest["incomplete_shards"]
    text = f"merged {len(shards)} shards into {out}"
    if incomplete:
        states = ", ".join(f"{s['index']} ({s['status']})" for s in shards if s["index"] in incomplete)
        text += f"; incomplete shards: {states}: re-run them (the cache keeps what they finished), then merge again"
    if manifest["failed"]:
        text += f"; {len(manifest['failed'])} item(s) failed (manifest.json lists them)"
    return text


def main(argv=None) -> None:
    from runner.console import silence_library_noise
    parser = argparse.ArgumentParser(prog="python -m runner.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a multirun folder whose jobs are shards")
    args = parser.parse_args(argv)
    silence_library_noise()
    merged = merge_all(collect(args.folder))
    if not merged:
        sys.exit(f"error: {args.folder} holds no sharded jobs (shard.count > 1): nothing to merge")
    for result in merged:
        print(result.line(), file=sys.stderr if result.error else sys.stdout)
    sys.exit(0 if all(result.complete for result in merged) else 1)

if __name__ == "__main__":
    main()

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
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from runner import atomic
from runner.errors import RunnerError
from runner.hashing import digest
from runner.sweep import Job, Outcome, collect

COMPLETE = ("ok", "failed")  # "failed": finished, some of its items could not be read


@dataclass
class Group:
    """The jobs of one unsharded run: the same overrides but shard.index."""
    count: int
    jobs: dict[int, Job] = field(default_factory=dict)  # shard index -> job

    @property
    def config(self) -> dict:
        """A finished shard's resolved config (every shard's is the same but its index)."""
        for job in self.jobs.values():
            if job.manifest and job.manifest.get("config"):
                return job.manifest["config"]
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


def merge_group(group: Group, out_dir: Path):
    from runner.pipeline import execute
    cfg = OmegaConf.create(group.config)
    cfg.shard.count, cfg.shard.index = 1, 0
    cfg.output.dir, cfg.cache.no_models, cfg.dry_run = str(out_dir), True, False
    try:
        result = execute(cfg, keep_records=False)
    except RunnerError as err:
        raise RunnerError(f"cannot merge the shards into {out_dir}: {err}") from None
    manifest = {**result.manifest, "merged_from": group.shards(), "incomplete_shards": group.incomplete()}
    atomic.write_json(out_dir / "manifest.json", manifest, indent=2)
    return result, manifest


def merge(folder: Path) -> list[tuple[Path, dict]]:
    """Merge every sharded run of the multirun `folder`; returns (run folder, manifest) each."""
    groups = sharded_groups(collect(folder))
    if not groups:
        raise RunnerError(f"{folder} holds no sharded jobs (shard.count > 1): nothing to merge")
    merged = []
    for n, group in enumerate(groups):
        out = folder / ("merged" if len(groups) == 1 else f"merged-{n}")
        merged.append((out, merge_group(group, out)[1]))
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
    try:
        merged = merge(args.folder)
    except RunnerError as err:
        sys.exit(f"error: {err}")
    for out, manifest in merged:
        print(describe(out, manifest))
    sys.exit(0 if all(not m["incomplete_shards"] and m["status"] == "ok" for _, m in merged) else 1)


if __name__ == "__main__":
    main()

"""Gather a sharded sweep's jobs into one run folder:

    python -m runner.merge MULTIRUN_DIR
    python -m runner.merge --out DIR recipe=... input=... cache.dir=s3://... shard.count=N

(the first is done by itself at the end of a sweep whose jobs are shards; the
second merges the shards of one command line run as separate commands, on
machines that share only the cache's bucket). With the cache in a folder, the
shards are known by their run folders; with the cache in a bucket, by the
manifests they put there (runner.jobs), so no folder need be shared. The merge is the
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

from omegaconf import DictConfig, OmegaConf

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
                 "manifest": (self.jobs[i].record or str(self.jobs[i].folder / "manifest.json"))
                 if i in self.jobs and self.jobs[i].manifest else None} for i in range(self.count)]

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


def published_groups(configs) -> list[Group]:
    """The sharded runs of `configs` (one per run, whatever its shard.index)
    as their shards' manifests in the cache's bucket say."""
    from runner.jobs import published, run_key
    groups: dict[str, Group] = {}
    for cfg in configs:
        if int(cfg.shard.count) > 1 and run_key(cfg) not in groups:
            groups[run_key(cfg)] = Group(int(cfg.shard.count), published(cfg))
    return list(groups.values())


def merge_group(group: Group, out_dir: Path):
    """The unsharded run over the shards' cache entries, in the shards'
    recorded environment: device, backend and the model stages' library
    versions, never re-decided on this host (a GPU cluster's shards merged on
    a CPU-only submit host), never refreshed. With the cache in a bucket,
    checkpoints and exports go to this machine's folders."""
    from runner.pipeline import execute
    from runner.objects import is_url
    from runner.schema import local_cache_dir
    recorded = group.recorded()
    cfg = OmegaConf.create(recorded["config"])
    if is_url(str(cfg.cache.dir)):
        here = local_cache_dir(str(cfg.cache.dir))
        cfg.cache.machine_dir = str(here)
        cfg.download.dir, cfg.backend.dir = str(here / "checkpoints"), str(here / "onnx")
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


def sweep_groups(outcome: Outcome, sweep: DictConfig | None) -> list[Group]:
    """A sweep's sharded runs: from the cache's bucket when the sweep's cache
    is one (`sweep`: the sweep's config, with Hydra's section), else from the
    jobs' run folders."""
    from runner.objects import is_url
    if sweep is not None and is_url(str(sweep.cache.dir)):
        from runner.config import sweep_jobs
        return published_groups(sweep_jobs(list(sweep.hydra.overrides.task)))
    return sharded_groups(outcome)


def sweep_config(folder: Path) -> DictConfig | None:
    """The config the sweep in `folder` was launched with (Hydra's multirun.yaml)."""
    try:
        return OmegaConf.load(folder / "multirun.yaml")
    except (OSError, ValueError):
        return None


def merge_all(outcome: Outcome, sweep: DictConfig | None = None) -> list[Merged]:
    """Merge every sharded run of a sweep (one failing does not stop the others;
    a dry run's shards computed nothing: there is nothing to merge)."""
    return merge_groups(sweep_groups(outcome, sweep), outcome.folder)


def merge_groups(groups: list[Group], folder: Path) -> list[Merged]:
    """Each group into <folder>/merged (merged-N when there are several)."""
    groups = [g for g in groups if not any((j.manifest or {}).get("dry_run") for j in g.jobs.values())]
    return [merge_one(group, folder / ("merged" if len(groups) == 1 else f"merged-{n}"))
            for n, group in enumerate(groups)]


def merge_one(group: Group, out: Path) -> Merged:
    try:
        return Merged(out, merge_group(group, out)[1])
    except RunnerError as err:
        return Merged(out, error=str(err))


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
    parser.add_argument("target", nargs="+", metavar="MULTIRUN_DIR | key=value",
                        help="a multirun folder whose jobs are shards; with --out, the shards' command line")
    parser.add_argument("--out", type=Path, help="where the merged run goes (given the command line)")
    args = parser.parse_args(argv)
    silence_library_noise()
    try:
        merged = merge_command(args.target, args.out) if args.out else \
            merge_all(collect(Path(args.target[0])), sweep_config(Path(args.target[0])))
    except RunnerError as err:
        sys.exit(f"error: {err}")
    if not merged:
        sys.exit(f"error: {args.target[0]} holds no sharded jobs (shard.count > 1): nothing to merge")
    for result in merged:
        print(result.line(), file=sys.stderr if result.error else sys.stdout)
    sys.exit(0 if all(result.complete for result in merged) else 1)


def merge_command(overrides: list[str], out: Path) -> list[Merged]:
    """The shards of one command line (any shard.index), whose cache is a bucket, merged into `out`."""
    from runner.config import compose_config
    from runner.objects import is_url
    cfg = compose_config(overrides)
    if not is_url(str(cfg.cache.dir)) or int(cfg.shard.count) <= 1:
        raise RunnerError("--out merges the shards of a command line whose cache.dir is an s3:// URL and shard.count "
                          "> 1; shards sharing a cache folder are merged from their multirun folder")
    group = published_groups([cfg])[0]
    return [merge_one(published_groups([cfg])[0], out)]


if __name__ == "__main__":
    main()

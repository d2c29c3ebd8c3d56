"""A sweep's jobs as their run folders say: each job's manifest is the only
truth about it (a launcher may run jobs in other processes or on other
machines). Read by the sweep's end (runner.sweep), its report and its merge.

Where machines share no folder, only the cache's bucket: a shard of a run whose
cache.dir is a URL also puts its manifest into the bucket, at
<cache.dir>/shards/<run>/<shard.index>.json, where <run> is the digest of the
run's config less what differs between its shards or their machines (the run
folder, shard.index, local folders): the merge finds every shard of a run
from that run's config alone."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    folder: Path
    manifest: dict | None  # None: the job died before writing one
    record: str | None = None  # where its manifest was read, when not <folder>/manifest.json (a bucket)

    @property
    def status(self) -> str:
        """The manifest's status; "died" when the job wrote none, or left it
        `running` (killed: SIGKILL, out of memory, a lost node)."""
        status = self.manifest["status"] if self.manifest else "died"
        return "died" if status == "running" else status

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Outcome:
    folder: Path
    jobs: list[Job] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.jobs) and all(job.ok for job in self.jobs)


def collect(sweep_dir: Path) -> Outcome:
    """Every job folder of `sweep_dir` (a sub-folder Hydra made: it holds
    .hydra/), in job order, with its manifest."""
    folders = sorted({p.parent.parent for p in Path(sweep_dir).glob("*/.hydra/config.yaml")},
                     key=lambda p: [int(s) if s.isdigit() else s for s in p.relative_to(sweep_dir).parts])
    jobs = []
    for folder in folders:
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            manifest = None
        jobs.append(Job(folder, manifest))
    return Outcome(Path(sweep_dir), jobs)


# A run's keys that differ between its shards, or between the machines they
# run on, and not what it computes: left out of the run's identity.
PER_SHARD = ("output", "dry_run", "show", "download")


def run_key(cfg) -> str:
    """The identity of a sharded run: its config (resolved) less PER_SHARD,
    shard.index, backend.dir and the cache's settings but its location."""
    from omegaconf import DictConfig, OmegaConf
    from runner.hashing import digest
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dict(cfg)
    for key in PER_SHARD:
        plain.pop(key, None)
    plain["shard"] = {"count": plain["shard"]["count"]}
    plain["cache"] = {"dir": str(cfg["cache"]["dir"]).rstrip("/")}
    plain["backend"] = {k: v for k, v in plain["backend"].items() if k != "dir"}
    return digest(OmegaConf.to_container(OmegaConf.create(plain), resolve=True))[:32]


def shard_record_key(cfg, index: int | None = None) -> tuple[str, str]:
    """(bucket, key) of a shard's record (of the run's folder of records when `index` is None)."""
    from runner.objects import Location
    location = Location.of(str(cfg.cache.dir))
    folder = location.key("shards", run_key(cfg))
    return location.bucket, folder + "/" + (f"{index}.json" if index is not None else "")


def publish(cfg, manifest: dict, folder: Path | None) -> None:
    """Put a shard's manifest where the merge finds it without a shared folder."""
    import socket
    from runner.objects import Bucket
    bucket, key = shard_record_key(cfg, int(cfg.shard.index))
    record = {"index": int(cfg.shard.index), "count": int(cfg.shard.count), "host": socket.gethostname(),
              "folder": str(folder) if folder is not None else None, "manifest": manifest}
    Bucket(bucket).put(key, json.dumps(record, indent=1).encode())


def published(cfg) -> dict[int, Job]:
    """The shards of `cfg`'s run that put their manifest into the bucket, by shard index."""
    from runner.objects import Bucket, concurrently
    name, folder = shard_record_key(cfg)
    bucket = Bucket(name)
    found = [o.key for o in bucket.list(folder, recursive=False) if o.key.endswith(".json")]
    jobs = {}
    for key, got in zip(found, concurrently(bucket.get, found)):
        try:
            record = json.loads(got[0]) if got else None
        except ValueError:
            record = None
        if record is not None:
            jobs[int(record["index"])] = Job(Path(record["folder"] or "."), record["manifest"],
                                             f"s3://{name}/{key}")
    return jobs

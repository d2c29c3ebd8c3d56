"""Sweeps (`python -m runner -m ...`): what the parent process learns from its
jobs. A launcher may run jobs in other processes (joblib) or on other machines
(Slurm, Ray), so the only truth is what each job wrote into its run folder:
its manifest. A Hydra callback reads them when the sweep ends."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


@dataclass
class Job:
    folder: Path
    manifest: dict | None  # None: the job died before writing one

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


class SweepCallback(Callback):
    """Runs in the process that launched the sweep, after every job ended."""
    last: Outcome | None = None
    merge_failed = False

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from runner import report
        outcome = collect(Path(config.hydra.sweep.dir))
        SweepCallback.last = outcome
        if not outcome.jobs:
            return
        written = report.write(outcome, (config.get("sweep") or {}).get("metric"))
        print(f"sweep: {len(outcome.jobs)} jobs, best by {written.metric}: {written.describe_best()}")
        print(f"sweep report: {outcome.folder / 'sweep.md'} (sweep.csv, sweep.png)")
        bad = [job for job in outcome.jobs if not job.ok]
        if bad:
            print(f"{len(bad)} of {len(outcome.jobs)} job(s) not ok: " + ", ".join(
                f"{job.folder.name} ({job.status})" for job in bad))
        self._merge_shards(outcome)

    def _merge_shards(self, outcome: Outcome) -> None:
        """A sweep of shards ends with their merged run folder."""
        from runner.merge import merge_all
        for result in merge_all(outcome):
            print(result.line())
            SweepCallback.merge_failed |= not result.complete

def exit_status() -> int:
    """1 if the last sweep of this process had a job that was not ok (or its shards did not merge)."""
    outcome = SweepCallback.last
    return 0 if outcome is None or (outcome.ok and not SweepCallback.merge_failed) else 1

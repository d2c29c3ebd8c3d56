"""A sweep's jobs as their run folders say: each job's manifest is the only
truth about it (a launcher may run jobs in other processes or on other
machines). Read by the sweep's end (runner.sweep), its report and its merge."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


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

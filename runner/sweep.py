"""Sweeps (`python -m runner -m ...`): what the parent process learns from its
jobs. A launcher may run jobs in other processes (joblib) or on other machines
(Slurm, Ray), so the only truth is what each job wrote into its run folder:
its manifest. A Hydra callback reads them when the sweep ends."""
from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.jobs import Outcome, collect


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
        self._merge_shards(outcome, config)

    def _merge_shards(self, outcome: Outcome, config: DictConfig) -> None:
        """A sweep of shards ends with their merged run folder."""
        from runner.merge import merge_all
        for result in merge_all(outcome, config):
            print(result.line())
            SweepCallback.merge_failed |= not result.complete


def exit_status() -> int:
    """1 if the last sweep of this process had a job that was not ok (or its shards did not merge)."""
    outcome = SweepCallback.last
    return 0 if outcome is None or (outcome.ok and not SweepCallback.merge_failed) else 1

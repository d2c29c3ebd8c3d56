"""The Hydra app: a sweep's jobs (and runs given Hydra flags or hydra.*
settings) start here, under Hydra's launchers and sweepers. A thin entry over
runner.pipeline; a sweep's exit status comes from its jobs' manifests
(runner.sweep)."""
from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import schema, signals
from runner.console import silence_library_noise
from runner.errors import RunnerError
from runner.paths import CONF_DIR

schema.register()  # before Hydra composes (in a launcher's own process too: it imports this module)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> float | None:
    """One run (or one sweep job). A sweep job returns its metric (sweep.metric,
    or the evaluation's main one) for a sweeper that optimises (Optuna)."""
    from runner.pipeline import execute, one_line, summary

    silence_library_noise()  # again: a launcher may run this job in a process of its own (Ray, Slurm)
    signals.install()  # and its signals: a job's manifest says `interrupted` under any launcher
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        result = execute(cfg, keep_records=False)
    except RunnerError as err:
        if not in_sweep:
            sys.exit(f"error: {err}")
        # the job's manifest says it too; the other jobs go on
        print(f"error: {err}", file=sys.stderr)
        return None
    except Exception as err:  # a bug, out of memory: the job's manifest has it (`error`); the other jobs go on
        if not in_sweep:
            raise
        print(f"error: {one_line(err)} (job {HydraConfig.get().job.num}; its manifest.json has it)", file=sys.stderr)
        return None
    print(summary(result, dry_run=bool(cfg.dry_run)))
    if result.failed and not in_sweep:
        sys.exit(1)
    metrics = result.metrics
    if not metrics or result.failed:
        return None
    return metrics["values"].get(cfg.sweep.metric or metrics["main"])

"""Command line: `python -m runner recipe=NAME input=PATH [key=value ...]`,
or `python -m runner -m ...` for a sweep. A thin layer over runner.pipeline:
one run is composed once and run as the Python API runs it; a sweep (and any
Hydra flag or hydra.* setting) goes through Hydra's own entry, its launchers
and sweepers, and its exit status comes from its jobs' manifests (runner.sweep)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import signals, sweep
from runner.config import compose_run, single_run, validate_cli
from runner.console import keep_library_files_in, silence_library_noise
from runner.errors import RunnerError
from runner.paths import CONF_DIR


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


def run_once(args: list[str]) -> int:
    """One run, as the Python API makes it: composed once, no Hydra job around
    it (a sweep's jobs get Hydra's launchers). Prints the summary; the exit status."""
    from runner.pipeline import execute, summary
    cfg = compose_run(args)
    keep_library_files_in(Path(str(cfg.cache.dir)).expanduser())
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    result = execute(cfg, keep_records=False)
    print(summary(result, dry_run=bool(cfg.dry_run)))
    return 1 if result.failed else 0


def main() -> None:
    silence_library_noise()
    signals.install()
    args = sys.argv[1:]
    try:
        if single_run(args):
            sys.exit(run_once(args))
        cfg = validate_cli(args)
        if cfg is not None:
            keep_library_files_in(Path(str(cfg.cache.dir)).expanduser())
        hydra_entry()
    except RunnerError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit("interrupted: everything finished so far is cached; re-run the same command to go on")
    sys.exit(sweep.exit_status())


if __name__ == "__main__":
    main()

"""Command line: `python -m runner recipe=NAME input=PATH [key=value ...]`,
or `python -m runner -m ...` for a sweep. A thin layer over runner.pipeline."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from runner.config import validate_cli
from runner.console import silence_library_noise
from runner.errors import RunnerError
from runner.paths import CONF_DIR

_failed_jobs = 0


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> None:
    from runner.pipeline import execute, summary

    global _failed_jobs
    try:
        result = execute(cfg, keep_records=False)
    except RunnerError as err:
        sys.exit(f"error: {err}")
    print(summary(result, dry_run=bool(cfg.dry_run)))
    _failed_jobs += bool(result.failed)


def main() -> None:
    silence_library_noise()
    try:
        validate_cli(sys.argv[1:])
        hydra_entry()
    except RunnerError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit("interrupted: everything finished so far is cached; re-run the same command to go on")
    sys.exit(1 if _failed_jobs else 0)


if __name__ == "__main__":
    main()

"""Command line: `python -m runner recipe=NAME input=PATH [key=value ...]`,
or `python -m runner -m ...` for a sweep. A thin layer over runner.pipeline:
one run is composed once (runner.config) and run as the Python API runs it;
a sweep, or any Hydra flag or hydra.* setting, goes through the Hydra app
(runner.hydra_app), its launchers and sweepers."""
from __future__ import annotations

import logging
import sys

from runner import signals
from runner.config import command_line, compose_run, help_text, single_run, validate_cli
from runner.console import keep_library_files_in, silence_library_noise
from runner.errors import RunnerError
from runner.schema import machine_dir


def run_once(args: list[str]) -> int:
    """One run, as the Python API makes it: composed once, no Hydra job around
    it (a sweep's jobs get Hydra's launchers). Prints the summary; the exit status."""
    from runner.pipeline import execute, summary
    cfg = compose_run(args)
    keep_library_files_in(machine_dir(cfg))
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    result = execute(cfg, keep_records=False)
    print(summary(result, dry_run=bool(cfg.dry_run)))
    return 1 if result.failed else 0


def main() -> None:
    silence_library_noise()
    signals.install()
    args = sys.argv[1:]
    if "--help" in args or "-h" in args:
        print(help_text())
        return
    try:
        sys.argv[1:] = args = command_line(args)  # as Hydra's app reads it too
        if single_run(args):
            sys.exit(run_once(args))
        cfg = validate_cli(args)
        if cfg is not None:
            keep_library_files_in(machine_dir(cfg))
        from runner.hydra_app import hydra_entry
        hydra_entry()
    except RunnerError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit("interrupted: everything finished so far is cached; re-run the same command to go on")
    from runner import sweep
    sys.exit(sweep.exit_status())


if __name__ == "__main__":
    main()

"""The Python API: the same runs as the command line, from a script or notebook.

    import runner
    result = runner.run(recipe="body_rtmpose", input="photos/", overrides=["detect.bbox_thr=0.5"])
    result.records[0]["instances"][0]["keypoints"]
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from runner.config import compose_run, quote
from runner.console import silence_library_noise
from runner.pipeline import RunResult, execute


def default_output_dir() -> Path:
    """Like Hydra's run folders: outputs/DATE/TIME (to the microsecond, so
    back-to-back calls do not share one)."""
    now = datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


def run(recipe: str | None = None, input: str | Path | None = None,
        overrides: list[str] | tuple[str, ...] = (), output_dir: str | Path | None = None,
        keep_records: bool = True) -> RunResult:
    """Run a recipe on an input; returns the exported records, the manifest and
    where the files went. Any config value can be set in `overrides`, as on the
    command line (`"pose/model=rtmpose_t"`, `"visualize.kpt_thr=0.5"`)."""
    silence_library_noise()
    args = [f"recipe={recipe}"] if recipe else []
    args += list(overrides)
    if input is not None:
        args.append(f"input={quote(str(input))}")
    args.append(f"output.dir={quote(str(output_dir or default_output_dir()))}")
    return execute(compose_run(args), keep_records=keep_records)

"""Composing configs (conf/ + recipes/) outside Hydra's own entry point, and
turning Hydra's composition errors into one line that names the valid choices."""
from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from runner.errors import RunnerError
from runner.paths import CONF_DIR

HYDRA_FLAGS_WE_CHECK = {"-m", "--multirun"}


def compose_config(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    except Exception as err:
        failure = err
    raise RunnerError(one_line(failure)) from None


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def one_line(err: Exception) -> str:
    text = str(err)
    missing = re.search(r"Could not find '([^']+)'", text)
    if missing:
        group, _, name = missing.group(1).rpartition("/")
        if group and (CONF_DIR / group).is_dir():
            return (f"unknown {group} {name!r}: choose one of {', '.join(options(group))} "
                    "(python -m runner --help lists them)")
    key = re.search(r"Could not override '([^']+)'", text) or \
        re.search(r"Key '([^']+)' is not in struct", text)
    if key:
        return _unknown_key(key.group(1), text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "LexerNoViableAltException" in text or "mismatched input" in text or "Error parsing override" in text:
        bad = re.search(r"(?:LexerNoViableAltException|Error parsing override)[: ]+'?([^'\n]+)", text)
        return (f"cannot read the override {bad.group(1).strip() if bad else lines[0]!r}: put values with "
                "spaces or special characters in quotes (key='a value'); one key=value per argument")
    return lines[0] if lines else type(err).__name__


def _unknown_key(key: str, text: str) -> str:
    full = re.search(r"full_key: (\S+)", text)
    key = full.group(1) if full else key
    parent, _, _ = key.rpartition(".")
    try:
        base = compose_config([])
    except RunnerError:
        return f"unknown key {key!r}"
    node = OmegaConf.select(base, parent) if parent else base
    if isinstance(node, DictConfig):
        where = f"'{parent}'" if parent else "the top level"
        return f"unknown key {key!r}: {where} has {', '.join(str(k) for k in node.keys())}"
    return f"unknown key {key!r}"


def check_values(cfg: DictConfig) -> None:
    """Values Hydra cannot type-check, checked before any work starts."""
    if OmegaConf.is_missing(cfg, "input"):
        raise RunnerError("no input: pass input=PATH (an image, a folder of images, a video) "
                          "or input=webcam")
    for key in ("detect.bbox_thr", "detect.nms_thr", "visualize.kpt_thr"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise RunnerError(f"{key}={value} is not a number between 0 and 1")
    for key in ("detect.batch_size", "pose.batch_size"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RunnerError(f"{key}={value} is not a positive whole number")


def quote(value: str) -> str:
    """A value safe inside a Hydra override (paths with spaces, commas, '=')."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def validate_cli(args: list[str]) -> None:
    """Compose and check every job the command line asks for (a sweep's
    included) before Hydra starts, so a bad recipe, model, key or value fails
    in one line before any job has run. With a sweeper that picks the values
    itself (Optuna), the fixed overrides are checked. Hydra's own flags
    (--help, --cfg, ...) are left to Hydra."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.startswith("-") and a not in HYDRA_FLAGS_WE_CHECK for a in args):
        return
    overrides = [a for a in args if not a.startswith("-")
                 and not a.lstrip("+~").startswith("hydra")]
    sweeper = next((a.split("=", 1)[1] for a in args if a.startswith("hydra/sweeper=")), "basic")
    if not set(args) & HYDRA_FLAGS_WE_CHECK:
        check_values(compose_config(overrides))
        return
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:
        raise RunnerError(one_line(err)) from None
    if sweeper != "basic":
        cfg = compose_config([o.input_line for o in parsed if not o.is_sweep_override()])
        check_values(cfg)
        if not cfg.eval.ann_file:  # the sweepers beside the basic one search for the best metric
            raise RunnerError(f"hydra/sweeper={sweeper} searches for the best metric: pass eval.ann_file=FILE "
                              "(ground truth for the inputs)")
        return
    for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None):
        for job in batch:
            check_values(compose_config(job))

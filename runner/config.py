"""Composing configs (conf/ + recipes/) outside Hydra's own entry point, and
turning Hydra's composition errors into one line that names the valid choices."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from runner import schema
from runner.errors import RunnerError
from runner.paths import CONF_DIR

HYDRA_FLAGS_WE_CHECK = {"-m", "--multirun"}


ADDABLE = ("download.checkpoints.",)  # the only keys an override may add (`+key=...`)


def compose_config(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The config of `overrides` (with Hydra's own section when `with_hydra`),
    or one line naming what is wrong and the valid choices."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    for override in overrides:
        key = override.lstrip("~").split("=", 1)[0]
        if key.startswith("+") and not key.lstrip("+").startswith(ADDABLE):
            raise RunnerError(f"{override.split('=', 1)[0]}: pose-runner takes no new keys (`+` adds one) but "
                              f"+download.checkpoints.NAME=PATH; python -m runner --help lists every key")

    schema.register()
    try:
        if GlobalHydra.instance().is_initialized():  # inside Hydra's app (a sweep's end): its search path is ours
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)
    except Exception as err:
        failure = err
    raise RunnerError(_wrong_type(failure) or one_line(failure)) from None


def _wrong_type(err: Exception) -> str | None:
    """A value the schema's type refuses, in the words of its rule."""
    from omegaconf.errors import ValidationError
    cause = err.__cause__
    if not isinstance(cause, ValidationError) or not cause.full_key:
        return None
    rule = RULES.get(cause.full_key)
    return f"{cause.full_key}={_shown(cause.value)} is not {rule.what}" if rule else None


HELP_GROUPS = ("recipe", "detect/model", "pose/model", "device", "backend")


def help_text() -> str:
    """`python -m runner --help`: the choices of each group and every key of the schema."""
    lines = ["pose-runner: cached MMPose pipelines (detect -> pose -> visualize -> export).", "",
             "  python -m runner recipe=NAME input=PATH [key=value ...]",
             "  python -m runner -m recipe=body_rtmpose pose/model=rtmpose_t,rtmpose_m detect.bbox_thr=0.3,0.5",
             "  python -m runner recipe=NAME input=PATH dry_run=true     # what would run, and why", "",
             "Choices (group=option; `recipe` picks models and steps, the others override it):"]
    lines += [f"{group}: {', '.join(options(group))}" for group in HELP_GROUPS]
    lines += ["", "Keys (key=value; each with its type, default and meaning):"]
    for name, kind, default, meaning, rule in schema.keys():
        shown = "(the chosen entry's keys: python -m runner.models list)" if name.endswith(".model") else \
            f"{kind} = {'null' if default is None else _shown(default)}" + \
            (f" ({rule.what})" if rule is not None and rule is not schema.BOOL else "")
        lines.append(f"  {name}: {shown}" + (f"\n      {meaning}" if meaning else ""))
    lines += ["", "Model details: python -m runner.models list.  Cache: python -m runner.cache info.",
              "Environment check: python -m runner.doctor.  Hydra's own flags: --hydra-help."]
    return "\n".join(lines)


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


RULES = {name: rule for name, _, _, _, rule in schema.keys() if rule is not None}
FILE_KEYS = {"eval.ann_file": "a COCO-style annotation file", "detect.model.path": "a COCO results JSON or an ONNX "
             "detector (MediaPipe's: .onnx or .tflite)", "pose.model.path": "an ONNX pose model (MediaPipe's: .onnx or "
             ".tflite)"}


def _shown(value) -> str:
    """A value as the user would have typed it (3, not 3.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def check_values(cfg: DictConfig) -> None:
    """Every value held to its schema rule (range, choices), and what needs
    more than one key, checked before any work starts (before any checkpoint
    is fetched or model loaded)."""
    if OmegaConf.is_missing(cfg, "input"):
        raise RunnerError("no input: pass input=PATH (an image, a folder of images, a video) "
                          "or input=webcam")
    from runner.objects import refuse_unsupported
    for key in ("cache.dir", "input"):
        refuse_unsupported(key, OmegaConf.select(cfg, key))
    for key, rule in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=True)
        except Exception:
            raise RunnerError(f"{key} must be set: {rule.what}") from None
        if isinstance(value, str) and value == "<absent>":  # a section left out (pose.camera)
            continue
        if not rule.good(value):
            raise RunnerError(f"{key}={_shown(value)} is not {rule.what}")
    for key in ("cache.dir", "download.dir", "backend.dir"):
        if not str(OmegaConf.select(cfg, key) or "").strip():
            raise RunnerError(f"{key}= is empty, which would put the cache in the working folder: pass a folder, "
                              "or leave it unset (cache.dir: $POSE_RUNNER_CACHE or ~/.cache/pose-runner)")
    if int(cfg.shard.index) >= int(cfg.shard.count):
        raise RunnerError(f"shard.index={cfg.shard.index} is not below shard.count={cfg.shard.count}: shards are "
                          "numbered from 0")
    entry = cfg.detect.model
    if "detect" in cfg.recipe.steps and entry.family == "from_file" and \
            (OmegaConf.is_missing(entry, "path") or entry.path is None):
        raise RunnerError("detect/model=gt takes its boxes from eval.ann_file: pass eval.ann_file=FILE"
                          if entry.name == "gt" else
                          "detect/model=from_file needs a file: pass detect.model.path=FILE (COCO results JSON)")
    for role in ("detect", "pose"):
        model = cfg[role].model
        if role in cfg.recipe.steps and str(model.family).startswith("onnx") and OmegaConf.is_missing(model, "path"):
            raise RunnerError(f"{role}/model={model.name} is an ONNX model file: pass {role}.model.path=FILE.onnx")
    unknown = [str(s) for s in cfg.recipe.steps if str(s) not in schema.STEPS]
    if unknown:
        raise RunnerError(f"recipe step {unknown[0]!r} is not known: steps are {', '.join(schema.STEPS)}")
    from runner.checkpoints.download import is_url  # a model file may be a URL (MediaPipe's official files)
    for key, what in FILE_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None) if not OmegaConf.is_missing(cfg, key) else None
        if value is not None and not is_url(str(value)) and not Path(str(value)).expanduser().is_file():
            raise RunnerError(f"{key}={value} does not exist: pass {key}=FILE ({what})")


def quote(value: str) -> str:
    """A value safe inside a Hydra override (paths with spaces, commas, '=')."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_folders(args: list[str]) -> None:
    """hydra.run.dir / hydra.sweep.dir, checked before Hydra writes into them:
    a file, or a folder that holds anything but a run of ours, is refused."""
    from runner.outputs import check_run_folder
    for arg in args:
        key, _, value = arg.partition("=")
        value = value.strip("'\"")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value and "${" not in value:
            folder = Path(value).expanduser()
            if key == "hydra.run.dir":
                check_run_folder(folder)
            elif folder.exists() and not folder.is_dir():
                raise RunnerError(f"hydra.sweep.dir={value} is a file: pass a folder")


def single_run(args: list[str]) -> bool:
    """Whether the command line is one run that needs nothing of Hydra's but
    the run folder (no sweep, no Hydra flag, no other hydra.* setting)."""
    hydra_settings = [a for a in args if a.lstrip("+~").startswith("hydra") and not a.startswith("hydra.run.dir=")]
    return not any(a.startswith("-") for a in args) and not hydra_settings


def compose_run(args: list[str]) -> DictConfig:
    """One run's config, composed once (the command line's and the Python API's),
    its output.dir the run folder: output.dir when given, else the folder
    hydra.run.dir names (outputs/DATE/TIME by default), checked before anything
    is written. Composed without Hydra's machinery where runner.compose can (a
    plain command line), else by Hydra."""
    from runner.compose import compose_fast
    fast = compose_fast(args)
    if fast is not None:
        cfg, run_dir = fast
    else:
        cfg = compose_config(args, with_hydra=True)
        run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
        with open_dict(cfg):
            del cfg["hydra"]
    if not OmegaConf.has_resolver("now"):  # Hydra's, when Hydra is not imported
        OmegaConf.register_new_resolver("now", lambda pattern: datetime.now().strftime(pattern), use_cache=True)
    given = any(a.split("=", 1)[0] == "output.dir" for a in args)
    with open_dict(cfg):
        cfg.output.dir = str(cfg.output.dir) if given else str(OmegaConf.create({"dir": run_dir}).dir)
    check_run_folder_of(cfg)
    check_values(cfg)
    return cfg


def check_run_folder_of(cfg: DictConfig) -> None:
    """The run folder, checked before Hydra or the run writes into it."""
    from runner.outputs import check_run_folder
    check_run_folder(Path(str(cfg.output.dir)).expanduser())


def config_files() -> list[Path]:
    """Every YAML file composition can read: conf/, and the recipes it links to
    (conf/recipe -> ../recipes: walked through the link, which rglob does not)."""
    import os
    found = [Path(top) / name for top, _, names in os.walk(CONF_DIR, followlinks=True)
             for name in names if name.endswith(".yaml")]
    return sorted(found)


def sweep_jobs(overrides: list[str], parsed=None) -> list[DictConfig]:
    """The config of each job of the basic sweep `overrides` (hydra.* left out)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    if parsed is None:
        parsed = OverridesParser.create().parse_overrides(
            [o for o in overrides if not o.lstrip("+~").startswith("hydra")])
    return [compose_config(job) for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None)
            for job in batch]


def validate_cli(args: list[str]) -> DictConfig | None:
    """Compose and check every job the command line asks for (a sweep's
    included) before Hydra starts, so a bad recipe, model, key or value fails
    in one line before any job has run. With a sweeper that picks the values
    itself (Optuna), the fixed overrides are checked. Hydra's own flags
    (--help, --cfg, ...) are left to Hydra. Returns the (first) job's config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.startswith("-") and a not in HYDRA_FLAGS_WE_CHECK for a in args):
        return None
    check_folders(args)
    overrides = [a for a in args if not a.startswith("-")
                 and not a.lstrip("+~").startswith("hydra")]
    sweeper = next((a.split("=", 1)[1] for a in args if a.startswith("hydra/sweeper=")), "basic")
    if not set(args) & HYDRA_FLAGS_WE_CHECK:
        cfg = compose_config(overrides)
        check_values(cfg)
        return cfg
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
        return cfg
    jobs = sweep_jobs(overrides, parsed)
    for cfg in jobs:
        check_values(cfg)
    return jobs[0]

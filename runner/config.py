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

    overrides = typed_overrides(overrides)
    schema.register()
    try:
        if GlobalHydra.instance().is_initialized():  # inside Hydra's app (a sweep's end): its search path is ours
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)
    except Exception as err:
        failure = err
    raise RunnerError(_wrong_type(failure) or _yaml_syntax(failure) or _left_out(failure, overrides)
                      or one_line(failure)) from None


# Keys whose overrides are held to the schema's type before Hydra sees them:
# OmegaConf takes 1, 0, yes and 2 for a boolean, and refuses 1e3 for a whole number.
TYPED = {name: ("bool" if "bool" in str(kind) else "int", rule) for name, kind, _, _, rule in schema.keys()
         if str(kind) in ("bool", "Optional[bool]", "int", "Optional[int]")}


def typed_overrides(overrides) -> list[str]:
    """The overrides, each of a boolean key true or false (or null where the
    key takes it), else one line; a whole-number key's integral float (1e3,
    also in a sweep's list) written as the whole number."""
    out = []
    for text in overrides:
        key = text.lstrip("+~").split("=", 1)[0]
        if key not in TYPED or "=" not in text or _plain_literal(TYPED[key][0], text.split("=", 1)[1]):
            out.append(text)
            continue
        from hydra.core.override_parser.overrides_parser import OverridesParser  # (0.15 s: only when needed)
        from hydra.core.override_parser.types import ChoiceSweep, Sweep
        try:
            (parsed,) = OverridesParser.create().parse_overrides([text])
        except Exception:  # composing says what is wrong with it
            out.append(text)
            continue
        value = parsed.value()
        if isinstance(value, Sweep) and not isinstance(value, ChoiceSweep):
            out.append(text)  # a range or interval: the sweeper's values are checked per job
            continue
        values = list(value.list) if isinstance(value, ChoiceSweep) else [value]
        kind, rule = TYPED[key]
        bad = [v for v in values if not isinstance(v, bool) and not (v is None and rule.good(None))]
        if kind == "bool" and bad:
            raise RunnerError(f"{key}={_shown(bad[0])} is not {rule.what}")
        if kind == "bool" or not any(isinstance(v, float) and v.is_integer() for v in values):
            out.append(text)
            continue
        shown = ",".join(_shown(v) for v in values)  # 1e3 -> 1000
        simple = not isinstance(value, ChoiceSweep) or value.simple_form
        out.append(f"{parsed.get_key_element()}={shown if simple else f'choice({shown})'}")
    return out


def _plain_literal(kind: str, value: str) -> bool:
    """A value Hydra's grammar reads as the key's own type as it is written
    (true/false, a decimal whole number): nothing to hold or rewrite."""
    if kind == "bool":
        return value.lower() in ("true", "false")
    return value.strip().lstrip("+-").isdigit() and value.strip().isascii()


def _yaml_syntax(err: Exception) -> str | None:
    """A YAML file (a recipe, a model entry) that does not parse: its file and line."""
    import yaml
    if not isinstance(err, yaml.MarkedYAMLError):
        return None
    mark = err.problem_mark or err.context_mark
    what = "; ".join(str(w) for w in (err.context, err.problem) if w)
    return (f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({what}): "
            "fix the file") if mark is not None else f"a config file is not valid YAML ({what}): fix the file"


def _left_out(err: Exception, overrides) -> str | None:
    """A key of a section the recipe leaves out (pose.camera: 3D hands only)."""
    if "Unexpected type for root: NoneType" not in str(err):
        return None
    sections = schema.optional_sections()
    for text in overrides:
        key = text.lstrip("+~").split("=", 1)[0]
        section = next((s for s in sections if key.startswith(s + ".")), None)
        if section is not None:
            users = [f"recipe={r}" for r in options("recipe")
                     if OmegaConf.select(OmegaConf.load(CONF_DIR / "recipe" / f"{r}.yaml"), section) is not None]
            return (f"{key}: this recipe has no {section} ({sections[section]}): drop it, or use a recipe that "
                    f"has one ({', '.join(users)})")
    return None


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
    ambiguous = re.search(r"Ambiguous value for argument '([^=']+)=([^']*)'", text)
    if ambiguous:
        key, value = ambiguous.groups()
        return (f"{key}={value}: a comma makes a sweep, which runs with -m; for one value with a comma, quote it: "
                f"{key}={quote(value)}")
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
    from runner.objects import is_url, refuse_unsupported
    for key in ("cache.dir", "input"):
        refuse_unsupported(key, OmegaConf.select(cfg, key))
    if is_url(OmegaConf.select(cfg, "cache.machine_dir")):
        raise RunnerError(f"cache.machine_dir={cfg.cache.machine_dir}: this machine's files (checkpoints, exports, "
                          "memos) need a folder; only cache.dir may be a bucket")
    for key, rule in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=True)
        except Exception:
            raise RunnerError(f"{key} must be set: {rule.what}") from None
        if isinstance(value, str) and value == "<absent>":  # a section left out (pose.camera)
            continue
        if not rule.good(value):
            raise RunnerError(f"{key}={_shown(value)} is not {rule.what}")
    for key in ("cache.dir", "cache.machine_dir", "download.dir", "backend.dir"):
        if not str(OmegaConf.select(cfg, key) or "").strip():
            raise RunnerError(f"{key}= is empty, which would put the cache in the working folder: pass a folder, "
                              "or leave it unset (cache.dir: $POSE_RUNNER_CACHE or ~/.cache/pose-runner)")
    for role in ("detect", "pose"):
        model = cfg[role].model
        if not isinstance(model, DictConfig):
            raise RunnerError(f"{role}.model={_shown(model)} is not a model entry: choose one with {role}/model=NAME "
                              f"({', '.join(options(f'{role}/model'))})")
        for name, rule in schema.MODEL_KEYS.items():
            value = model.get(name) if not OmegaConf.is_missing(model, name) else None
            if not rule.good(value):
                raise RunnerError(f"{role}.model.{name}={_shown(value)} is not {rule.what}")
    if "pose" in cfg.recipe.steps and cfg.pose.flip_test:
        from runner.families import family
        if not family(str(cfg.pose.model.family)).has_flip_test:
            raise RunnerError(f"pose.flip_test=true: pose/model={cfg.pose.model.name} has no flip test (the "
                              f"{cfg.pose.model.family} family runs one pass): pass pose.flip_test=null or false")
    if int(cfg.shard.index) >= int(cfg.shard.count):
        raise RunnerError(f"shard.index={cfg.shard.index} is not below shard.count={cfg.shard.count}: shards are "
                          "numbered from 0")
    entry = cfg.detect.model
    if "detect" in cfg.recipe.steps and entry.family == "from_file" and \
            (OmegaConf.is_missing(entry, "path") or entry.path is None):
        raise RunnerError("detect/model=gt takes its boxes from eval.ann_file: pass eval.ann_file=FILE"
                          if entry.name == "gt" else
                          "detect/model=from_file needs a file: pass detect.model.path=FILE (COCO results JSON)")
    onnx_roles = [role for role in ("detect", "pose")
                  if role in cfg.recipe.steps and str(cfg[role].model.family).startswith("onnx")]
    for role in onnx_roles:
        if model_file(cfg, role) is None:
            raise RunnerError(f"{role}/model={cfg[role].model.name} is an ONNX model file: pass "
                              f"{role}.model.path=FILE.onnx")
    chosen = cfg.download.get("checkpoints") or {}
    if len(onnx_roles) == 2 and cfg.detect.model.name == cfg.pose.model.name and cfg.pose.model.name in chosen:
        name = cfg.pose.model.name
        raise RunnerError(f"+download.checkpoints.{name} would be both the detector's and the pose model's file: "
                          "pass detect.model.path=FILE.onnx and pose.model.path=FILE.onnx")
    unknown = [str(s) for s in cfg.recipe.steps if str(s) not in schema.STEPS]
    if unknown:
        raise RunnerError(f"recipe step {unknown[0]!r} is not known: steps are {', '.join(schema.STEPS)}")
    from runner.checkpoints.download import is_url  # a model file may be a URL (MediaPipe's official files)
    for key, what in FILE_KEYS.items():
        onnx = key.split(".")[0] in onnx_roles
        if onnx:
            key, value = model_file_key(cfg, key.split(".")[0]), model_file(cfg, key.split(".")[0])
        else:
            value = OmegaConf.select(cfg, key, default=None) if not OmegaConf.is_missing(cfg, key) else None
        path = Path(str(value)).expanduser() if value is not None else None
        if path is not None and is_url(str(value)):
            continue
        if path is not None and path.is_dir():
            raise RunnerError(f"{key}={value} is a folder: pass the {'.onnx ' if onnx else ''}file in it ({what})")
        if path is not None and not path.is_file():
            raise RunnerError(f"{key}={value} does not exist: pass {key}=FILE ({what})")


def model_file_key(cfg: DictConfig, role: str) -> str:
    """The key that names an ONNX model entry's file: +download.checkpoints.NAME
    (as a sweep gives each model its weights) when set, else ROLE.model.path."""
    name = str(cfg[role].model.name)
    return f"download.checkpoints.{name}" if name in (cfg.download.get("checkpoints") or {}) else f"{role}.model.path"


def model_file(cfg: DictConfig, role: str) -> str | None:
    """An ONNX model entry's file (model_file_key's value), None when not given."""
    key = model_file_key(cfg, role)
    if key.startswith("download."):
        return str(cfg.download.checkpoints[str(cfg[role].model.name)])
    model = cfg[role].model
    return None if OmegaConf.is_missing(model, "path") or model.path is None else str(model.path)


def use_model_files(cfg: DictConfig) -> None:
    """An ONNX model entry's file given as +download.checkpoints.NAME is its
    path (every reader of ROLE.model.path, and its checkpoint, sees it)."""
    for role in ("detect", "pose"):
        if str(cfg[role].model.get("family")).startswith("onnx") and model_file_key(cfg, role).startswith("download."):
            with open_dict(cfg):
                cfg[role].model.path = model_file(cfg, role)


def quote(value: str) -> str:
    """A value safe inside a Hydra override (paths with spaces, commas, '=')."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_folders(args: list[str]) -> None:
    """hydra.run.dir / hydra.sweep.dir, checked before Hydra writes into them:
    a file, or a folder that holds anything but a run of ours, is refused."""
    from runner import atomic
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
            elif not atomic.writable(folder):
                raise RunnerError(f"hydra.sweep.dir={value} cannot be written (a read-only file system, or no "
                                  "permission): pass a folder you can write")


def command_line(args: list[str]) -> list[str]:
    """The command line as Hydra is to read it: overrides held to the
    schema's types (typed_overrides), and output.dir, the run folder, said as
    Hydra says it: hydra.run.dir for one run, hydra.sweep.dir for a sweep
    (whose jobs write DIR/0, DIR/1, ...)."""
    sweep = bool(set(args) & HYDRA_FLAGS_WE_CHECK)
    given = [a for a in args if a.split("=", 1)[0] == "output.dir"]
    if not given:
        return typed_overrides(args)
    value = given[-1].split("=", 1)[1]
    hydra_key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    other = next((a.split("=", 1)[1] for a in args if a.startswith(hydra_key + "=")), None)
    if sweep and _swept(given[-1]):
        raise RunnerError(f"output.dir={value}: a sweep has one output.dir, its jobs' folders are DIR/0, DIR/1, ...: "
                          "pass one folder (quote a name with a comma: output.dir='a,b')")
    if other is not None and other != value:
        raise RunnerError(f"output.dir={value} and {hydra_key}={other} name two run folders: pass one of them")
    rest = [a for a in args if a not in given and not a.startswith(hydra_key + "=")]
    return typed_overrides(rest + [f"{hydra_key}={value}"])


def _swept(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    try:
        return OverridesParser.create().parse_overrides([override])[0].is_sweep_override()
    except Exception:  # composing says what is wrong with it
        return False


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

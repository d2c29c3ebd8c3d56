"""One run's config composed without Hydra's machinery.

Hydra's compose costs a first result about 0.6 s of CPU before any image is
read: importing hydra, scanning every installed launcher and sweeper plugin,
building its own config schemas. What a run's command line composes here is
small and regular (conf/config.yaml's defaults list, one YAML per group
choice, the recipe and the recipes it includes, key=value overrides), so it
is composed the way Hydra composes it, with OmegaConf alone:

    the schema (runner/schema.py), then each group's chosen option at its
    package (detect/model -> detect.model), conf/config.yaml itself, the
    recipe (the recipes it includes first, each at the global package), then
    the command line's key=value overrides, in order.

A group's choice is the command line's (`pose/model=rtmpose_t`), else the
outermost recipe's `override /group: option`, else conf/config.yaml's.

Anything else (Hydra flags, hydra.* keys other than the run folder, `~key`,
`++key`, functions, interpolated or escaped values, and every error, whose
message Hydra's composition words and runner.config turns into one line)
returns None, and the caller composes with Hydra. tests/test_compose.py holds
both to the same config over every recipe and the kinds of value people type."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from runner import schema
from runner.paths import CONF_DIR

KEY = re.compile(r"^\+?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$")
GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)+$|^recipe$|^device$|^backend$|^cache$|^output$")
OPTION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# Hydra's override grammar (OverrideLexer.g4) for the typed primitives
INT = re.compile(r"^[+-]?(0|[1-9](_?[0-9])*)$")
_DIGITS = r"[0-9](_?[0-9])*"
_POINT = rf"(({_DIGITS})?\.{_DIGITS}|{_DIGITS}\.)"
FLOAT = re.compile(rf"^[+-]?({_POINT}|({_DIGITS}|{_POINT})[eE][+-]?{_DIGITS}|[Ii][Nn][Ff]|[Nn][Aa][Nn])$")
BOOL = re.compile(r"^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$")
NULL = re.compile(r"^[Nn][Uu][Ll][Ll]$")
# a plain word or path, with interpolations of plain names (${oc.env:HOME}): no spaces, escapes, brackets
UNQUOTED = re.compile(r"^([A-Za-z0-9_/.:%+-]|\$\{[A-Za-z0-9_.:/-]+\})+$")
QUOTED = re.compile(r"""^(?:'([^'\\]*)'|"([^"\\]*)")$""")


class NotSimple(Exception):
    """An override this composer leaves to Hydra."""


def primitive(text: str):
    """A value as Hydra's grammar types it: int, float, bool, null, or a string."""
    if text == "":  # `key=`: the empty string
        return ""
    quoted = QUOTED.match(text)
    if quoted:
        return quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
    if INT.match(text):
        return int(text.replace("_", ""))
    if FLOAT.match(text):
        return float(text.replace("_", ""))
    if BOOL.match(text):
        return text.lower() == "true"
    if NULL.match(text):
        return None
    if UNQUOTED.match(text):
        return text
    raise NotSimple(text)


def value(text: str):
    """A primitive, or a flat list of them: [a,b,c]."""
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [primitive(part.strip()) for part in inner.split(",")] if inner else []
    return primitive(text)


def parse(overrides: list[str]) -> tuple[dict[str, str], list[tuple[str, object, bool]]]:
    """(group choices, [(key, value, adds)]) of a command line, or NotSimple."""
    choices, values = {}, []
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep:
            raise NotSimple(override)
        if GROUP.match(key):
            if not OPTION.match(text):
                raise NotSimple(override)
            choices[key] = text
        elif KEY.match(key) and not key.startswith(("hydra.", "+hydra")):
            values.append((key.lstrip("+"), value(text), key.startswith("+")))
        else:
            raise NotSimple(override)
    return choices, values


def _load(path: Path) -> tuple[dict, list, str | None]:
    """(content without `defaults`, the defaults list, the `# @package` header)."""
    text = path.read_text()
    package = re.search(r"^#\s*@package\s+(\S+)", text, re.MULTILINE)
    content = yaml.safe_load(text) or {}
    if not isinstance(content, dict):
        raise NotSimple(str(path))
    defaults = content.pop("defaults", [])
    return content, defaults, package.group(1) if package else None


def _option_file(group: str, option: str) -> Path:
    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file():
        raise NotSimple(f"{group}={option}")  # Hydra's error names the choices
    return path


def _recipe_tree(name: str, overrides: dict[str, str], seen: tuple = ()) -> list[tuple[dict, str | None]]:
    """The recipe's contents in merge order (the recipes it includes first), and
    its `override /group: option` choices added to `overrides` (the outermost wins)."""
    if name in seen:
        raise NotSimple(f"recipe {name} includes itself")
    content, defaults, package = _load(_option_file("recipe", name))
    if package != "_global_":
        raise NotSimple(f"recipe {name} is not @package _global_")
    parts: list[tuple[dict, str | None]] = []
    included = []
    for entry in defaults:
        if entry == "_self_":
            included.append(None)
        elif isinstance(entry, str):
            included.append(entry)
        elif isinstance(entry, dict) and len(entry) == 1 and next(iter(entry)).startswith("override /"):
            group, option = next(iter(entry.items()))
            overrides.setdefault(group.removeprefix("override /"), str(option))
        else:
            raise NotSimple(f"recipe {name}: defaults entry {entry}")
    if None not in included:
        included.append(None)
    for entry in included:
        parts += [(content, "_global_")] if entry is None else _recipe_tree(entry, overrides, (*seen, name))
    return parts


def _at(package: str, content: dict) -> dict:
    if package == "_global_":
        return content
    for part in reversed(package.split(".")):
        content = {part: content}
    return content


def compose_fast(overrides: list[str]) -> tuple[DictConfig, str] | None:
    """(the config without Hydra's section, the run folder as Hydra's config
    names it, unresolved), or None: compose with Hydra instead."""
    try:
        return _compose(overrides)
    except Exception:  # NotSimple, or any error: Hydra composes it and words the error
        return None


def _compose(overrides: list[str]) -> tuple[DictConfig, str]:
    run_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")), None)
    choices, values = parse([o for o in overrides if not o.startswith("hydra.run.dir=")])
    root, root_defaults, _ = _load(CONF_DIR / "config.yaml")
    picked: dict[str, str] = dict(choices)  # the command line's win
    order: list[str | tuple[str, str]] = []
    for entry in root_defaults:
        if isinstance(entry, dict) and len(entry) == 1:
            group, option = next(iter(entry.items()))
            order.append((group, str(option)))
        elif entry in ("schema", "_self_"):
            order.append(entry)
        else:
            raise NotSimple(f"conf/config.yaml: defaults entry {entry}")
    known = {group for group, _ in (e for e in order if isinstance(e, tuple))}
    if set(choices) - known:
        raise NotSimple("a group conf/config.yaml does not list")
    recipe = picked.get("recipe") or dict(e for e in order if isinstance(e, tuple)).get("recipe")
    recipe_parts = _recipe_tree(recipe, picked)
    parts: list[dict] = []  # merged in order, as plain data, then onto the schema at once
    for entry in order:
        if entry == "schema":
            continue
        if entry == "_self_":
            parts.append(root)
            continue
        group, default = entry
        option = picked.get(group, default)
        if group == "recipe":
            parts += [_at(package, content) for content, package in recipe_parts]
            continue
        content, _, package = _load(_option_file(group, option))
        if group == "hydra":
            run_dir = run_dir or content["run"]["dir"]
            continue
        parts.append(_at(package or group.replace("/", "."), content))
    merged: dict = {}
    for part in parts:
        _merge_into(merged, part)
    cfg = OmegaConf.merge(OmegaConf.structured(schema.Config), merged)
    OmegaConf.set_struct(cfg, True)
    for key, given, adds in values:
        if _has(cfg, key) == adds:  # Hydra refuses to add a key that is there, or to set one that is not
            raise NotSimple(key)
        if adds:
            with open_dict(cfg):
                OmegaConf.update(cfg, key, given, merge=True)
        else:
            OmegaConf.update(cfg, key, given, merge=True)
    return cfg, run_dir


def _merge_into(into: dict, part: dict) -> None:
    """OmegaConf.merge's rule on plain data: mappings merge key by key, anything
    else (a value, a list, a null) replaces what was there."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge_into(into[key], value)
        else:
            into[key] = _copied(value)


def _copied(value):
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    return [_copied(v) for v in value] if isinstance(value, list) else value


def _has(cfg: DictConfig, key: str) -> bool:
    parent, _, last = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return isinstance(node, DictConfig) and last in node.keys()

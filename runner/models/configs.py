"""Model configs: where a registry entry's config file is, what identifies it
(in cache keys and export names), and the config itself (mmengine, loaded
only where a model is built or described).

A config's identity is the sha256 of its text and of every _base_ file it
inherits, found by reading the files (Python's ast), not by executing them:
it needs no mmengine (0.5 s to import) and no torch, so a run whose models are
all exported and cached never loads either."""
from __future__ import annotations

import ast
import copy
import functools
import importlib.util
import os
import re
from pathlib import Path

from runner.errors import RunnerError
from runner.hashing import digest, sha256_bytes


def resolve_config_path(spec: str, relative_to: Path | None = None) -> Path:
    """`mmpose::body_2d_keypoint/x.py` is a config shipped inside the installed
    package (<mmpose>/.mim/configs/..., mmengine's convention); anything else
    is a file path (relative to `relative_to`, for a _base_)."""
    if "::" in spec:
        package, rel = spec.split("::", 1)
        found = importlib.util.find_spec(package)
        if found is None or found.origin is None:
            raise RunnerError(f"model config {spec}: package {package} is not installed; run make setup")
        path = Path(os.path.normpath(Path(found.origin).parent / ".mim" / "configs" / rel))
    else:
        path = Path(os.path.normpath((relative_to or Path()) / Path(spec).expanduser()))
    if not path.is_file():
        raise RunnerError(f"model config {spec} not found (looked at {path}); fix the model entry's config")
    return path


def _bases(path: Path) -> list[Path]:
    """The files `path` inherits: its top-level `_base_` (a name or a list) and
    any top-level `with read_base(): from .x import *` of mmengine's newer
    style (where mmengine looks: the module's own statements, not a walk of
    every node, which cost 50 ms a run)."""
    text = re.sub(r"\{\{[^}]*\}\}", "None", path.read_text())  # {{_base_.x}} is mmengine's, not Python
    found = []
    body = ast.parse(text).body
    for node in body + [inner for w in body if isinstance(w, ast.With) for inner in w.body]:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            value = ast.literal_eval(node.value)
            found += [resolve_config_path(v, path.parent) for v in ([value] if isinstance(value, str) else value)]
        elif isinstance(node, ast.ImportFrom) and node.level:
            folder = path.parent
            for _ in range(node.level - 1):
                folder = folder.parent
            found.append(folder / (node.module or "").replace(".", "/").__add__(".py"))
    return [p for p in found if p.is_file()]


@functools.lru_cache(maxsize=None)
def config_identity(spec: str) -> str:
    """sha256 over the config's text and its _base_ files' (in inheritance order)."""
    seen, order, todo = set(), [], [resolve_config_path(spec)]
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        order.append(path)
        todo += _bases(path)
    return digest([sha256_bytes(p.read_bytes()) for p in order])


@functools.lru_cache(maxsize=None)
def _pristine_config(spec: str):
    from mmengine.config import Config
    return Config.fromfile(str(resolve_config_path(spec)))


def load_config(spec: str):
    """A private deep copy: MMDet/MMPose builders edit configs in place (e.g.
    `backbone.init_cfg = None`), and an edited shared copy would change what
    later readers of it see within one process."""
    return copy.deepcopy(_pristine_config(spec))

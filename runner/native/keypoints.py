"""Keypoint sets: names, left/right flips, skeleton and colours, read from
MMPose's own dataset description files (configs/_base_/datasets/NAME.py in
the installed mmpose) without importing mmpose: they are literal dicts, read
here with Python's ast, as MMPose's parse_pose_metainfo reads them."""
from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.errors import RunnerError

# The keypoint set of a model that only says how many keypoints it has (an ONNX file).
BY_COUNT = {17: "coco", 21: "coco_wholebody_hand", 26: "halpe26", 68: "coco_wholebody_face", 133: "coco_wholebody"}


@dataclass(frozen=True)
class KeypointSet:
    name: str
    names: tuple[str, ...]
    flip_indices: tuple[int, ...]            # each keypoint's mirror image (itself when central)
    skeleton: tuple[tuple[int, int], ...]    # links, as keypoint index pairs
    keypoint_colors: np.ndarray              # (K, 3) uint8, RGB, as MMPose draws them
    link_colors: np.ndarray                  # (L, 3) uint8, RGB
    sigmas: np.ndarray                       # (K,) float32, COCO's OKS

    def __len__(self) -> int:
        return len(self.names)


def datasets_folder() -> Path:
    """configs/_base_/datasets of the installed mmpose (found, not imported)."""
    spec = importlib.util.find_spec("mmpose")
    if spec is None or spec.origin is None:
        raise RunnerError("mmpose is not installed: run make setup")
    return Path(spec.origin).parent / ".mim" / "configs" / "_base_" / "datasets"


def _literal(node: ast.AST):
    """A literal made of dict(...) calls, dicts, lists, tuples, constants, and
    lists repeated or joined (`[1.] * 133`)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add)):  # [1.] * 133
        left, right = _literal(node.left), _literal(node.right)
        return left * right if isinstance(node.op, ast.Mult) else left + right
    return ast.literal_eval(node)


def set_file(name: str) -> Path:
    """The MMPose dataset file a keypoint set is read from."""
    path = datasets_folder() / f"{name}.py"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in datasets_folder().glob("*.py")))
        raise RunnerError(f"keypoint set {name!r} is unknown: MMPose describes {known}")
    return path


@functools.lru_cache(maxsize=None)
def keypoint_set(name: str) -> KeypointSet:
    """The keypoint set MMPose's dataset file NAME.py describes (coco, coco_wholebody, ...)."""
    tree = ast.parse(set_file(name).read_text())
    info = next(_literal(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "dataset_info" for t in node.targets))
    points = [info["keypoint_info"][i] for i in sorted(info["keypoint_info"])]
    ids = {p["name"]: i for i, p in enumerate(points)}
    flips = tuple(ids[p["swap"]] if p.get("swap") not in ("", None, p["name"]) else i for i, p in enumerate(points))
    links = [info["skeleton_info"][i] for i in sorted(info["skeleton_info"])]
    return KeypointSet(
        name=name, names=tuple(p["name"] for p in points), flip_indices=flips,
        skeleton=tuple((ids[a], ids[b]) for a, b in (link["link"] for link in links)),
        keypoint_colors=np.array([p.get("color", [255, 128, 0]) for p in points], np.uint8),
        link_colors=np.array([link.get("color", [96, 96, 255]) for link in links], np.uint8).reshape(-1, 3),
        sigmas=np.array(info["sigmas"], np.float32))


def for_count(count: int, name: str | None = None) -> KeypointSet:
    """The set `name`, or the one a model with `count` keypoints predicts; refused
    when they disagree or no set has that many."""
    if name is None:
        if count not in BY_COUNT:
            raise RunnerError(f"no keypoint set of {count} keypoints is known ({', '.join(f'{n}: {s}' for n, s in BY_COUNT.items())}): "
                              "pass pose.model.keypoints=NAME (an MMPose dataset name)")
        name = BY_COUNT[count]
    found = keypoint_set(name)
    if len(found) != count:
        raise RunnerError(f"keypoint set {name} has {len(found)} keypoints, but the model predicts {count}: pass the "
                          "model's set (pose.model.keypoints=NAME)")
    return found

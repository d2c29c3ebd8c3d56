"""What the native engine must know of a model besides its network: input
size, normalisation, decoding. Three sources, one description:

- a model config (MMPose / MMDetection, read by mmengine without torch),
  written into its export's record when the runner exports it, so later runs
  read it there;
- MMDeploy's pipeline.json beside an ONNX model file (its Resize, Pad,
  Normalize, TopDownAffine and SimCCLabelDecode), or the runner's own record
  beside one of its exports given as a model file (trusted only when it names
  that file's sha256);
- the model entry's keys (detect.model.*, pose.model.*), which win over both.

A description that would give NaN or wrong keypoints (a std of 0, a split
ratio that does not match the file's SimCC bins, an input size the file does
not take) is refused in one line before any image is read.

A config the native engine cannot reproduce (a heatmap head, UDP, DARK, a
detector other than RTMDet) has no description: its model runs in MMPose."""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from runner.errors import RunnerError

RTMPOSE_NORM = {"mean": (123.675, 116.28, 103.53), "std": (58.395, 57.12, 57.375), "bgr_to_rgb": True}
RTMDET_NORM = {"mean": (103.53, 116.28, 123.675), "std": (57.375, 57.12, 58.395), "bgr_to_rgb": False}
SIMCC_HEADS = ("RTMCCHead", "RTMWHead")


@dataclass(frozen=True)
class TopdownModel:
    """A SimCC top-down pose model (RTMPose, RTMW, DWPose)."""
    input_size: tuple[int, int]        # (w, h)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bgr_to_rgb: bool
    split_ratio: float                 # SimCC bins per input pixel
    flip_test: bool                    # the model's own test_cfg
    padding: float = 1.25              # GetBBoxCenterScale
    num_keypoints: int | None = None   # the head's (None: the file's outputs say)

    def as_dict(self) -> dict:
        return {"kind": "topdown", **asdict(self)}


@dataclass(frozen=True)
class DetectorModel:
    """An RTMDet whose raw head the runner exported ("rtmdet": decoding and NMS
    here), or an MMDeploy end2end detector ("end2end": dets and labels, NMS
    inside the graph)."""
    head: str
    input_size: tuple[int, int]        # (w, h) the image is letterboxed into
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bgr_to_rgb: bool
    pad_val: float = 114
    strides: tuple[int, ...] = ()      # rtmdet: the feature levels' strides
    test_cfg: dict | None = None       # rtmdet: score_thr, nms_pre, nms, max_per_img, min_bbox_size

    def as_dict(self) -> dict:
        return {"kind": "detector", **asdict(self)}


def from_dict(data: dict):
    """A description from its as_dict() (an export's record)."""
    cls = {"topdown": TopdownModel, "detector": DetectorModel}[data["kind"]]
    values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
    for name in ("input_size", "mean", "std", "strides"):
        if name in values and values[name] is not None:
            values[name] = tuple(values[name])
    return cls(**values)


# -- from a model config (mmengine) ------------------------------------------------
def _step(pipeline, kind: str) -> dict | None:
    return next((dict(t) for t in pipeline if str(t["type"]).split(".")[-1] == kind), None)


def from_config(spec: str):
    """The description of a registry model's config, or None when the native
    engine cannot reproduce what MMPose / MMDetection do with it."""
    from runner.models.configs import load_config
    cfg = load_config(spec)
    model, pipeline = cfg.model, cfg.test_dataloader.dataset.pipeline
    norm = model.get("data_preprocessor") or {}
    if model.get("type") == "TopdownPoseEstimator":
        head, codec = model.head, model.head.get("decoder") or {}
        affine = _step(pipeline, "TopdownAffine") or {}
        if head.type not in SIMCC_HEADS or codec.get("type") != "SimCCLabel" or codec.get("use_dark") \
                or codec.get("decode_visibility") or affine.get("use_udp"):
            return None
        return TopdownModel(tuple(int(v) for v in codec["input_size"]), tuple(norm["mean"]), tuple(norm["std"]),
                            bool(norm.get("bgr_to_rgb", False)), float(codec["simcc_split_ratio"]),
                            bool((model.get("test_cfg") or {}).get("flip_test", False)),
                            float((_step(pipeline, "GetBBoxCenterScale") or {}).get("padding", 1.25)),
                            int(head.out_channels))
    head = model.get("bbox_head") or {}
    resize, pad = _step(pipeline, "Resize"), _step(pipeline, "Pad")
    priors = head.get("anchor_generator") or {}
    if model.get("type") != "RTMDet" or not str(head.get("type", "")).startswith("RTMDet") or resize is None \
            or not resize.get("keep_ratio") or pad is None or priors.get("offset", 0) != 0:
        return None
    strides = tuple(int(s if isinstance(s, (int, float)) else s[0]) for s in priors["strides"])
    pad_val = pad.get("pad_val", {}).get("img", 0)
    return DetectorModel("rtmdet", tuple(int(v) for v in pad["size"]), tuple(norm["mean"]), tuple(norm["std"]),
                         bool(norm.get("bgr_to_rgb", False)), float(pad_val[0] if isinstance(pad_val, (list, tuple))
                                                                   else pad_val), strides,
                         json.loads(json.dumps(dict(model.test_cfg))))


def described_record(config: str) -> dict:
    """What an export's record says of its model: the description (None: the
    native engine cannot run it), the config it is made from, and by which describer."""
    described = from_config(config)
    return {"model": described.as_dict() if described is not None else None, "config": config,
            "described_by": describer()}


# -- from an ONNX model file: MMDeploy's pipeline.json, the entry's keys, the file -----------------
@functools.lru_cache(maxsize=1)
def describer() -> str:
    """This module's identity: an export's record says which describer wrote its
    description, and one written by another is described again (a comment's
    edit costs one re-description; reading the bytes costs nothing)."""
    from runner.hashing import sha256_file
    return sha256_file(__file__)[:16]


@dataclass(frozen=True)
class OwnRecord:
    """The runner's record of one of its exports (the .json beside it)."""
    path: Path
    description: dict
    structure: list
    config: str | None       # the model config it was described from (None: an older record)
    described_by: str | None


def runners_own(model_file: Path, sha256: str) -> OwnRecord | None:
    """The record beside `model_file` when it is the runner's record of exactly
    this file (it names the file's sha256); any other .json is not ours to trust."""
    path = model_file.with_suffix(".json")
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not rec.get("model") or rec.get("sha256") != sha256:
        return None
    return OwnRecord(path, rec["model"], rec.get("structure"), rec.get("config"), rec.get("described_by"))


def pipeline_file(model_file: Path) -> Path | None:
    """MMDeploy's pipeline.json beside `model_file`, if there is one."""
    path = model_file.parent / "pipeline.json"
    return path if path.is_file() else None


def _mmdeploy_pipeline(model_file: Path) -> tuple[list[dict], dict]:
    """(the transforms, the post-processing params) of the pipeline.json beside `model_file`."""
    path = pipeline_file(model_file)
    if path is None:
        return [], {}
    fix = f"{path} is not MMDeploy's pipeline.json"
    try:
        tasks = json.loads(path.read_text())["pipeline"]["tasks"]
    except (ValueError, KeyError, TypeError) as err:
        raise RunnerError(f"{fix} ({type(err).__name__}: it has no pipeline.tasks list): fix or remove it") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise RunnerError(f"{fix} (pipeline.tasks is not a list of tasks): fix or remove it")
    transforms = next((t.get("transforms", []) for t in tasks if t.get("module") == "Transform"), [])
    post = next((t.get("params", {}) for t in tasks if t.get("component")), {})
    if not isinstance(transforms, list) or not all(isinstance(t, dict) and "type" in t for t in transforms) \
            or not isinstance(post, dict):
        raise RunnerError(f"{fix} (its Transform task's transforms are not a list of typed steps): fix or remove it")
    return transforms, post


def _first(*values):
    """The first value that is set (keys, then pipeline.json, then the file, then defaults)."""
    return next((v for v in values if v is not None), None)


def _norm(entry, found: dict) -> tuple:
    mean, std = _first(entry.get("mean"), found["mean"]), _first(entry.get("std"), found["std"])
    return (tuple(float(v) for v in mean), tuple(float(v) for v in std),
            bool(_first(entry.get("bgr_to_rgb"), found["bgr_to_rgb"])))


def onnx_detector(entry, model_file: Path, fixed_size: tuple[int, int] | None,
                  own: OwnRecord | None = None) -> DetectorModel:
    """An MMDeploy end2end detector: the entry's keys, else pipeline.json, else
    the file's fixed input size, else the entry's fallback_input_size, with
    RTMDet-nano's pre-processing (or the runner's own record of its export)."""
    if own is not None and own.description["kind"] == "detector":  # the runner's RTMDet export: its raw head
        base = from_dict(own.description)
        return _checked_detector(DetectorModel(
            base.head, _size(_first(entry.get("input_size"), base.input_size), "detect"),
            *_norm(entry, {"mean": base.mean, "std": base.std, "bgr_to_rgb": base.bgr_to_rgb}),
            float(_first(entry.get("pad_val"), base.pad_val)), base.strides, base.test_cfg), entry, fixed_size)
    transforms, _ = _mmdeploy_pipeline(model_file)
    resize, pad, norm = (_step(transforms, k) for k in ("Resize", "Pad", "Normalize"))
    size = _first(entry.get("input_size"), (pad or {}).get("size"), (resize or {}).get("size"),
                  (resize or {}).get("scale"), fixed_size, entry.get("fallback_input_size"))
    if size is None:
        raise RunnerError(f"detect.model.path={model_file}: its input size is not fixed and no pipeline.json sits "
                          "beside it: pass detect.model.input_size=[W,H]")
    if norm:
        found = {"mean": norm["mean"], "std": norm["std"], "bgr_to_rgb": norm.get("to_rgb", False)}
    else:  # a pipeline without Normalize feeds raw pixels (YOLOX)
        found = {"mean": (0, 0, 0), "std": (1, 1, 1), "bgr_to_rgb": False} if transforms else RTMDET_NORM
    pad_val = _first(entry.get("pad_val"), ((pad or {}).get("pad_val") or {}).get("img"), 114)
    return _checked_detector(DetectorModel("end2end", _size(size, "detect"), *_norm(entry, found),
                                           float(pad_val[0] if isinstance(pad_val, (list, tuple)) else pad_val)),
                             entry, fixed_size)


def onnx_topdown(entry, model_file: Path, fixed_size: tuple[int, int] | None,
                 simcc_width: int | None, own: OwnRecord | None = None) -> TopdownModel:
    """A SimCC pose export: the runner's own record of it, else the entry's keys,
    else pipeline.json, else the file's input shape (the split ratio from its
    simcc_x width) and RTMPose's normalisation."""
    if own is not None and own.description["kind"] == "topdown":  # the runner's own export: its record, then the keys
        base = from_dict(own.description)
        return _checked_topdown(TopdownModel(
            _size(_first(entry.get("input_size"), base.input_size), "pose"),
            *_norm(entry, {"mean": base.mean, "std": base.std, "bgr_to_rgb": base.bgr_to_rgb}),
            float(_first(entry.get("simcc_split_ratio"), base.split_ratio)), base.flip_test, base.padding,
            base.num_keypoints), entry, fixed_size, simcc_width)
    transforms, post = _mmdeploy_pipeline(model_file)
    affine, center, norm = (_step(transforms, k) for k in ("TopDownAffine", "TopDownGetBboxCenterScale", "Normalize"))
    size = _first(entry.get("input_size"), (affine or {}).get("image_size"), post.get("input_size"), fixed_size)
    if size is None:
        raise RunnerError(f"pose.model.path={model_file}: its input size is not fixed and no pipeline.json sits "
                          "beside it: pass pose.model.input_size=[W,H] (RTMPose body: [192,256])")
    size = _size(size, "pose")
    ratio = _first(entry.get("simcc_split_ratio"), post.get("simcc_split_ratio"),
                   simcc_width / size[0] if simcc_width else None, 2.0)
    found = {"mean": norm["mean"], "std": norm["std"], "bgr_to_rgb": norm.get("to_rgb", True)} if norm else RTMPOSE_NORM
    return _checked_topdown(TopdownModel(size, *_norm(entry, found), float(ratio),
                                         flip_test=bool(post.get("flip_test", False)),
                                         padding=float((center or {}).get("padding", 1.25))),
                            entry, fixed_size, simcc_width)


# -- checks: a description that would give NaN or wrong keypoints is refused before any image is read ------
def _size(value, role: str) -> tuple[int, int]:
    try:
        w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        raise RunnerError(f"{role}.model.input_size={list(value) if isinstance(value, (list, tuple)) else value} "
                          "is not [W, H]: two positive whole numbers") from None
    if not (w.is_integer() and h.is_integer() and w > 0 and h > 0):
        raise RunnerError(f"{role}.model.input_size=[{w:g}, {h:g}] is not [W, H]: two positive whole numbers")
    return int(w), int(h)


def _check_norm(described, role: str) -> None:
    import math
    for name in ("mean", "std"):
        values = getattr(described, name)
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise RunnerError(f"{role}.model.{name}={list(values)} is not three numbers (one per colour channel)")
    if any(v <= 0 for v in described.std):
        raise RunnerError(f"{role}.model.std={list(described.std)}: a std of 0 or less divides the pixels into "
                          "NaN or mirrors them: pass the model's positive std (or null for its own)")


def _file_size_agrees(described, fixed_size, role: str) -> None:
    if fixed_size is not None and tuple(described.input_size) != tuple(fixed_size):
        raise RunnerError(f"{role}.model.input_size={list(described.input_size)}, but the file takes "
                          f"{list(fixed_size)} (its input is fixed): pass {role}.model.input_size=null")


def _checked_detector(described: DetectorModel, entry, fixed_size) -> DetectorModel:
    _check_norm(described, "detect")
    if described.head == "end2end":  # a fixed-size file's own size wins; a runner's export is dynamic
        _file_size_agrees(described, fixed_size, "detect")
    if not 0 <= described.pad_val <= 255:
        raise RunnerError(f"detect.model.pad_val={described.pad_val:g} is not a pixel value (0 to 255)")
    return described


def _checked_topdown(described: TopdownModel, entry, fixed_size, simcc_width) -> TopdownModel:
    import math
    _check_norm(described, "pose")
    _file_size_agrees(described, fixed_size, "pose")
    ratio = described.split_ratio
    if not (math.isfinite(ratio) and ratio > 0):
        raise RunnerError(f"pose.model.simcc_split_ratio={ratio:g} is not a positive number (SimCC bins per input "
                          "pixel; RTMPose: 2.0)")
    if simcc_width and round(described.input_size[0] * ratio) != simcc_width:
        raise RunnerError(f"pose.model.simcc_split_ratio={ratio:g} with input width {described.input_size[0]} makes "
                          f"{described.input_size[0] * ratio:g} bins, but the file's simcc_x has {simcc_width}: pass "
                          f"pose.model.simcc_split_ratio={simcc_width / described.input_size[0]:g} (or null)")
    return described

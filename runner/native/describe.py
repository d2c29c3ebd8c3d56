"""What the native engine must know of a model besides its network: input
size, normalisation, decoding. Three sources, one description:

- a model config (MMPose / MMDetection, read by mmengine without torch),
  written into its export's record when the runner exports it, so later runs
  read it there;
- MMDeploy's pipeline.json beside an ONNX model file (its Resize, Pad,
  Normalize, TopDownAffine and SimCCLabelDecode);
- the model entry's keys (detect.model.*, pose.model.*), which win over both.

A config the native engine cannot reproduce (a heatmap head, UDP, DARK, a
detector other than RTMDet) has no description: its model runs in MMPose."""
from __future__ import annotations

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


# -- from an ONNX model file: MMDeploy's pipeline.json, the entry's keys, the file -----------------
def runners_own(model_file: Path) -> tuple[dict, list] | None:
    """(description, output structure) when `model_file` is one of the runner's
    own exports (its record sits beside it), else None."""
    try:
        rec = json.loads(model_file.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return (rec["model"], rec["structure"]) if isinstance(rec, dict) and rec.get("model") else None



def _mmdeploy_pipeline(model_file: Path) -> tuple[list[dict], dict]:
    """(the transforms, the post-processing params) of the pipeline.json beside `model_file`."""
    path = model_file.parent / "pipeline.json"
    if not path.is_file():
        return [], {}
    try:
        tasks = json.loads(path.read_text())["pipeline"]["tasks"]
    except (ValueError, KeyError, TypeError) as err:
        raise RunnerError(f"{path} is not MMDeploy's pipeline.json ({type(err).__name__}): fix or remove it") from None
    transforms = next((t.get("transforms", []) for t in tasks if t.get("module") == "Transform"), [])
    post = next((t.get("params", {}) for t in tasks if t.get("component")), {})
    return transforms, post


DEFAULT_DETECTOR_SIZE = (320, 320)  # RTMDet-nano's, MMPose's CPU person detector


def _first(*values):
    """The first value that is set (keys, then pipeline.json, then the file, then defaults)."""
    return next((v for v in values if v is not None), None)


def _norm(entry, found: dict) -> tuple:
    mean, std = _first(entry.get("mean"), found["mean"]), _first(entry.get("std"), found["std"])
    return (tuple(float(v) for v in mean), tuple(float(v) for v in std),
            bool(_first(entry.get("bgr_to_rgb"), found["bgr_to_rgb"])))


def onnx_detector(entry, model_file: Path, fixed_size: tuple[int, int] | None) -> DetectorModel:
    """An MMDeploy end2end detector: the entry's keys, else pipeline.json, else
    the file's fixed input size and RTMDet-nano's pre-processing."""
    own = runners_own(model_file)
    if own is not None and own[0]["kind"] == "detector":  # the runner's RTMDet export: its raw head
        return from_dict(own[0])
    transforms, _ = _mmdeploy_pipeline(model_file)
    resize, pad, norm = (_step(transforms, k) for k in ("Resize", "Pad", "Normalize"))
    size = _first(entry.get("input_size"), (pad or {}).get("size"), (resize or {}).get("size"),
                  (resize or {}).get("scale"), fixed_size, DEFAULT_DETECTOR_SIZE)
    if norm:
        found = {"mean": norm["mean"], "std": norm["std"], "bgr_to_rgb": norm.get("to_rgb", False)}
    else:  # a pipeline without Normalize feeds raw pixels (YOLOX)
        found = {"mean": (0, 0, 0), "std": (1, 1, 1), "bgr_to_rgb": False} if transforms else RTMDET_NORM
    pad_val = _first(entry.get("pad_val"), ((pad or {}).get("pad_val") or {}).get("img"), 114)
    return DetectorModel("end2end", (int(size[0]), int(size[1])), *_norm(entry, found),
                         float(pad_val[0] if isinstance(pad_val, (list, tuple)) else pad_val))


def onnx_topdown(entry, model_file: Path, fixed_size: tuple[int, int] | None,
                 simcc_width: int | None) -> TopdownModel:
    """A SimCC pose export: the entry's keys, else pipeline.json, else the file's
    input shape (the split ratio from its simcc_x width) and RTMPose's normalisation."""
    own = runners_own(model_file)
    if own is not None and own[0]["kind"] == "topdown":  # the runner's own export: its record says
        return from_dict(own[0])
    transforms, post = _mmdeploy_pipeline(model_file)
    affine, center, norm = (_step(transforms, k) for k in ("TopDownAffine", "TopDownGetBboxCenterScale", "Normalize"))
    size = _first(entry.get("input_size"), (affine or {}).get("image_size"), post.get("input_size"), fixed_size)
    if size is None:
        raise RunnerError(f"pose.model.path={model_file}: its input size is not fixed and no pipeline.json sits "
                          "beside it: pass pose.model.input_size=[W,H] (RTMPose body: [192,256])")
    ratio = _first(entry.get("simcc_split_ratio"), post.get("simcc_split_ratio"),
                   simcc_width / int(size[0]) if simcc_width else None, 2.0)
    found = {"mean": norm["mean"], "std": norm["std"], "bgr_to_rgb": norm.get("to_rgb", True)} if norm else RTMPOSE_NORM
    return TopdownModel((int(size[0]), int(size[1])), *_norm(entry, found), float(ratio),
                        flip_test=bool(post.get("flip_test", False)),
                        padding=float((center or {}).get("padding", 1.25)))

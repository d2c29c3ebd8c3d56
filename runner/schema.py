"""The config's schema: every key's type, default, allowed values and meaning,
stated once. Hydra composes conf/config.yaml onto it (ConfigStore, node
`schema`), so a value of the wrong type fails at composition; each key's rule
holds its value to its range (runner.config.check_values) before any work starts (a sweep's every job before
the first runs); `python -m runner --help` lists the keys from here.

The groups' YAML files (conf/detect/model/, conf/pose/model/, conf/device/,
conf/backend/, the recipes) set only what tells one choice from another."""
from __future__ import annotations

import copy
import os
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from omegaconf import OmegaConf

from runner.backends.table import BACKENDS, DEVICES, PRECISIONS
from runner.filters import METHODS

STEPS = ("download", "detect", "pose", "track", "smooth", "visualize", "export", "evaluate")
OVERLAY_FORMATS = ("jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff")


@dataclass(frozen=True)
class Rule:
    """What a good value is: `good(value)`, and the words an error says it in."""
    good: Callable[[Any], bool]
    what: str


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


FRACTION = Rule(lambda v: _number(v) and 0 <= v <= 1, "a number between 0 and 1")
BOOL = Rule(lambda v: isinstance(v, bool), "true or false")


def positive(what: str = "a positive number") -> Rule:
    return Rule(lambda v: _number(v) and v > 0, what)


def whole(least: int, what: str, none_ok: bool = False) -> Rule:
    return Rule(lambda v: (none_ok and v is None) or (_whole(v) and v >= least), what)


def one_of(*choices, what: str | None = None, lower: bool = False) -> Rule:
    return Rule(lambda v: (str(v).lower() if lower and v is not None else v) in choices,
                what or "one of " + ", ".join(str(c) for c in choices))


def numbers(*lengths: int, what: str) -> Rule:
    def good(v) -> bool:
        if v is None:
            return True
        values = list(v) if not isinstance(v, (int, float, str)) else [v]
        return len(values) in lengths and all(_number(x) for x in values)
    return Rule(good, what)


def _items(count: int, good: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A list (a ListConfig too) of `count` values that are each good, or null."""
    def check(v) -> bool:
        if v is None:
            return True
        if isinstance(v, (str, bytes, int, float, dict)) or not hasattr(v, "__len__"):
            return False
        return len(v) == count and all(good(x) for x in v)
    return check


def _scalar(good: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or good(v)


# The model entries' own keys (detect.model.*, pose.model.*): set by the registry's
# YAML files and, for ONNX model files, by the user (null: read from the file).
MODEL_KEYS = {
    "input_size": Rule(_items(2, lambda x: _whole(x) and x > 0), "[w, h]: two positive whole numbers of pixels, "
                                                                   "or null"),
    "mean": Rule(_items(3, _number), "three numbers (one per colour channel), or null"),
    "std": Rule(_items(3, lambda x: _number(x) and x > 0), "three positive numbers, or null"),
    "simcc_split_ratio": Rule(_scalar(lambda v: _number(v) and v > 0), "a positive number, or null"),
    "num_keypoints": Rule(_scalar(lambda v: _whole(v) and v > 0), "a positive whole number, or null"),
    "pad_val": Rule(_scalar(lambda v: _number(v) and 0 <= v <= 255), "a pixel value from 0 to 255, or null"),
    "bgr_to_rgb": Rule(_scalar(lambda v: isinstance(v, bool)), "true, false or null"),
}


def key(default, help: str, rule: Rule | None = None):
    """A config key: its default, what it means, and what a good value is."""
    meta = {"help": help, "rule": rule}
    if isinstance(default, (list, dict)) or is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Download:
    mirror: Optional[str] = key(None, "a folder of checkpoints under their official file names, tried before the "
                                      "network")
    dir: str = key("${cache.machine_dir}/checkpoints", "where downloaded checkpoints are kept (on this machine)")
    timeout_s: float = key(30.0, "seconds a download may stall", positive("a positive number of seconds"))
    checkpoints: Dict[str, str] = key({}, "per model, a checkpoint (path or URL) that wins over the registry's: "
                                          "+download.checkpoints.rtmpose_m=/weights/mine.pth")


@dataclass
class Detect:
    model: Any = key(None, "the detector's registry entry (detect/model=NAME)")
    bbox_thr: float = key(0.3, "boxes below this score are dropped (applied to cached detections: no re-run)",
                          FRACTION)
    nms_thr: float = key(0.3, "box NMS IoU (applied to cached detections: no re-run)", FRACTION)
    batch_size: int = key(4, "images a detector batch holds", whole(1, "a positive whole number"))
    every: int = key(1, "videos: the detector on one frame in N; between, boxes come from the previous keypoints",
                     whole(1, "a positive whole number (1: the detector on every frame)"))
    every_kpt_thr: float = key(0.3, "keypoints at least this confident make those boxes", FRACTION)


@dataclass
class Camera:
    focal: Optional[Any] = key(None, "[fx, fy] in pixels", numbers(2, what="[fx, fy] in pixels, or null"))
    principal_point: Optional[Any] = key(None, "[cx, cy] in pixels",
                                         numbers(2, what="[cx, cy] in pixels, or null"))
    root_depth: Optional[Any] = key(None, "mm: the right hand root's depth, or [right, left]",
                                    numbers(1, 2, what="a depth in mm, or [right, left], or null"))


@dataclass
class Pose:
    model: Any = key(None, "the pose model's registry entry (pose/model=NAME)")
    batch_size: int = key(32, "boxes (or images) a pose batch holds", whole(1, "a positive whole number"))
    flip_test: Optional[bool] = key(None, "a second pass on the mirrored crop, averaged; null: the model config's "
                                          "own (on for RTMPose / RTMW / DWPose); false: rtmlib's one pass",
                                    Rule(lambda v: v is None or isinstance(v, bool),
                                         "true, false or null (the model's own)"))
    camera: Optional[Camera] = key(None, "3D hands (InterNet): the camera; null values: assumed from the image")


@dataclass
class Device:
    type: str = key("auto", "auto (a CUDA GPU when torch sees one, else the CPU), cpu or cuda",
                    one_of(*DEVICES, what=", ".join(DEVICES)))
    index: int = key(0, "device=cuda: which GPU", whole(0, "a whole number, 0 or more"))
    threads: Optional[int] = key(None, "intra-op threads of the network runtimes; null: one per core",
                                 whole(1, "a positive whole number, or null for one per core", none_ok=True))


@dataclass
class Backend:
    name: str = key("auto", "what runs the networks (runner/backends/table.py)",
                    one_of("auto", *BACKENDS, what=", ".join(("auto", *BACKENDS))))
    dir: str = key("${cache.machine_dir}/onnx", "exported networks (and int8 OpenVINO IR), by checkpoint and "
                                               "settings (on this machine, as download.dir)")
    precision: str = key("f32", "f32 | bf16 | f16 | int8; part of the model stages' keys",
                         one_of(*PRECISIONS, what=", ".join(PRECISIONS)))
    calibration: Optional[str] = key(None, "int8 only: a folder of images like the ones you will run")


@dataclass
class Cache:
    dir: str = key("${oc.env:POSE_RUNNER_CACHE,${oc.env:HOME}/.cache/pose-runner}",
                   "one cache for every run and sweep job: detections, keypoints, checkpoints, exports "
                   "(POSE_RUNNER_CACHE moves it); or s3://BUCKET/PREFIX: the entries in a bucket, the rest on "
                   "this machine")
    machine_dir: str = key("${local_dir:${cache.dir}}",
                           "this machine's own files: checkpoints, exports, the memos of file hashes and of "
                           "checkpoints found to fit, the libraries' files; cache.dir itself when it is a folder, "
                           "else $POSE_RUNNER_CACHE or ~/.cache/pose-runner. Set it to keep them on a local disk "
                           "when cache.dir is a shared one (NFS, Lustre)")
    refresh: bool = key(False, "recompute every entry this run touches (and overwrite it)")
    lock_timeout_s: float = key(900.0, "longest wait for another process computing (downloading, exporting) what "
                                       "this run needs; then a clear error, never a hang",
                                positive("a positive number of seconds"))
    lock: str = key("auto", "auto: OS locks on local disks, lock files made atomically on network file systems "
                            "(NFS, Lustre, GPFS), which do not all honour OS locks; or os | create",
                    one_of("auto", "os", "create", what="auto, os or create"))
    lock_stale_s: float = key(30.0, "a lock file whose holder stopped refreshing it this long ago is broken",
                              positive("a positive number of seconds"))
    no_models: bool = key(False, "read model results from the cache only, never run a model (a missing one fails "
                                 "its item): what python -m runner.merge runs with")


DEFAULT_CACHE = "~/.cache/pose-runner"


def local_cache_dir(cache_dir: str | None) -> Path:
    """Where this machine keeps what must be a local folder (checkpoints, ONNX
    exports, file-hash memos, the libraries' own files): cache.dir itself when
    it is a folder; when it is a URL (the entries in a bucket), POSE_RUNNER_CACHE
    if that is a folder, else ~/.cache/pose-runner."""
    from runner.objects import is_url
    for candidate in (cache_dir, os.environ.get("POSE_RUNNER_CACHE")):
        if candidate and not is_url(candidate):
            return Path(candidate).expanduser()
    return Path(DEFAULT_CACHE).expanduser()


def machine_dir(cfg) -> Path:
    """The run's folder of this machine's own files (cache.machine_dir)."""
    return Path(str(cfg.cache.machine_dir)).expanduser()


OmegaConf.register_new_resolver("local_dir", lambda cache_dir: str(local_cache_dir(str(cache_dir))), replace=True)


@dataclass
class Output:
    dir: str = key("${hydra:runtime.output_dir}", "the run folder (on the command line: as hydra.run.dir; in a sweep, "
                                                     "the sweep's folder, as hydra.sweep.dir: job N writes DIR/N)")
    overlay_ext: str = key("jpg", "the overlays' image format",
                           one_of(*OVERLAY_FORMATS, lower=True))
    video_fourcc: str = key("mp4v", "the overlay video's codec (OpenCV FourCC; one this OpenCV can write to .mp4 "
                                    "is checked before any image is read)",
                            Rule(lambda v: isinstance(v, str) and len(v) == 4 and v.isascii() and v.isprintable(),
                                 "four characters (an OpenCV FourCC such as mp4v)"))


@dataclass
class Track:
    enabled: bool = key(False, "a track id per person of a video (smoothing and per-track outputs turn it on)")
    iou_thr: float = key(0.3, "a box continues a track whose predicted box it overlaps this much", FRACTION)
    max_lost: int = key(30, "frames a track is kept without a match", whole(0, "a whole number of frames, 0 or more"))


@dataclass
class Smooth:
    enabled: bool = key(False, "smooth each track's keypoints after pose (no model re-runs)")
    method: str = key("one_euro", "one_euro (causal) | butterworth (zero-phase) | median | none",
                      one_of(*METHODS, what=", ".join(METHODS[:-1]) + " or " + METHODS[-1]))
    min_cutoff: float = key(1.0, "one_euro: Hz at rest", positive("a positive frequency in Hz"))
    beta: float = key(0.007, "one_euro: how fast the cutoff rises with speed",
                      Rule(lambda v: _number(v) and v >= 0, "a number, 0 or more"))
    cutoff_hz: float = key(6.0, "butterworth: cutoff", positive("a positive frequency in Hz"))
    order: int = key(4, "butterworth: order", whole(1, "a positive whole number"))
    window: int = key(7, "median and hampel: frames", whole(1, "a positive whole number of frames"))
    hampel: bool = key(False, "first replace outliers (hampel_sigmas robust SDs from their window's median)")
    hampel_sigmas: float = key(3.0, "hampel: robust SDs", positive())
    kpt_thr: float = key(0.3, "a keypoint below this is missing", FRACTION)
    max_gap: int = key(10, "a keypoint missing for at most this many frames is interpolated (and marked)",
                       whole(0, "a whole number of frames, 0 or more"))


@dataclass
class Shard:
    count: int = key(1, "one input fanned out over this many jobs", whole(1, "a positive whole number"))
    index: int = key(0, "this job's shard", whole(0, "a whole number from 0 to shard.count - 1"))


@dataclass
class Visualize:
    kpt_thr: float = key(0.3, "keypoints below this are not drawn", FRACTION)
    draw_bbox: bool = key(True, "draw the boxes")
    radius: int = key(3, "keypoint radius", whole(0, "a whole number of pixels, 0 or more"))
    thickness: int = key(1, "limb thickness", whole(1, "a positive whole number of pixels"))


@dataclass
class Export:
    predictions: bool = key(True, "one JSON per image (per video) in MMPoseInferencer's layout")
    coco_results: bool = key(True, "one COCO keypoint-results JSON for the run")
    openpose: bool = key(False, "videos: OpenPose JSON per frame")
    table: Optional[str] = key(None, "videos: csv | parquet, a row per frame x track x keypoint",
                               one_of(None, "csv", "parquet", what="csv, parquet or null"))
    trc: bool = key(False, "videos: OpenSim TRC markers per track (pixels)")


@dataclass
class Eval:
    ann_file: Optional[str] = key(None, "ground truth (COCO body, COCO-WholeBody, COCO-style hands or faces): scored "
                                        "with MMPose's metrics into metrics.json")


@dataclass
class Sweep:
    metric: Optional[str] = key(None, "the metric a sweep's report ranks jobs by; null: the evaluation's main one")


@dataclass
class Recipe:
    name: str = key("", "the recipe's name")
    steps: List[str] = key([], "the steps it chains: " + ", ".join(STEPS))


@dataclass
class Config:
    input: str = key(MISSING, "an image, a video, a folder of images and videos, webcam[:N], or a stream URL")
    recursive: bool = key(False, "walk a folder's sub-folders too (outputs keep the relative paths)")
    frame_stride: int = key(1, "keep every Nth frame of a video, stream or webcam",
                            whole(1, "a positive whole number (1: every frame)"))
    dry_run: bool = key(False, "print what each stage would compute (and why) without running any model")
    max_frames: Optional[int] = key(None, "stop a video or webcam after this many frames",
                                    whole(1, "a positive whole number, or null for all", none_ok=True))
    max_pixels: Optional[int] = key(178956970, "refuse an image whose header declares more pixels (Pillow's limit)",
                                    whole(1, "a positive whole number, or null for no limit", none_ok=True))
    show: bool = key(False, "show overlays in a window as they are made, when a display exists")
    download: Download = key(Download(), "")
    detect: Detect = key(Detect(), "")
    pose: Pose = key(Pose(), "")
    device: Device = key(Device(), "")
    backend: Backend = key(Backend(), "")
    cache: Cache = key(Cache(), "")
    output: Output = key(Output(), "")
    track: Track = key(Track(), "")
    smooth: Smooth = key(Smooth(), "")
    shard: Shard = key(Shard(), "")
    visualize: Visualize = key(Visualize(), "")
    export: Export = key(Export(), "")
    eval: Eval = key(Eval(), "")
    sweep: Sweep = key(Sweep(), "")
    recipe: Recipe = key(Recipe(), "")


def register() -> None:
    """Put the schema where conf/config.yaml's defaults list finds it."""
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(name="schema", node=Config)


def keys(node: type = Config, prefix: str = ""):
    """(dotted key, type, default, help, rule) of every leaf key, in order."""
    for f in fields(node):
        name = prefix + f.name
        default = f.default if f.default is not MISSING else \
            (f.default_factory() if f.default_factory is not MISSING else "???")
        inner = _dataclass_of(f.type)
        if inner is not None:
            yield from keys(inner, name + ".")
        else:
            rule = f.metadata.get("rule") or (BOOL if f.type in ("bool", bool) else None)
            yield name, f.type, default, f.metadata.get("help", ""), rule


def optional_sections(node: type = Config, prefix: str = "") -> dict[str, str]:
    """The sections that are null unless a recipe sets them (pose.camera), with their meaning."""
    found = {}
    for f in fields(node):
        inner = _dataclass_of(f.type)
        if inner is not None and f.default is None:
            found[prefix + f.name] = f.metadata.get("help", "")
        elif inner is not None:
            found.update(optional_sections(inner, prefix + f.name + "."))
    return found


def _dataclass_of(annotation) -> type | None:
    found = globals().get(str(annotation).removeprefix("Optional[").removesuffix("]"))
    return found if isinstance(found, type) and is_dataclass(found) else None

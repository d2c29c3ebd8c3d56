"""Model-loading policy: resolved configs and their digests, the device, the
backend that runs a network, and MMDetection / MMPose models built from
registry entries once per process (sequential sweep jobs reuse them), with
checkpoints loaded safely."""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from runner.checkpoints.safe_load import install_allow_list, refused_globals_explained
from runner.errors import RunnerError
from runner.hashing import digest


def resolve_config_path(spec: str) -> Path:
    """`mmpose::body_2d_keypoint/x.py` is a config shipped inside the installed
    package (<mmpose>/.mim/configs/..., mmengine's convention); anything else
    is a file path."""
    if "::" in spec:
        package, rel = spec.split("::", 1)
        found = importlib.util.find_spec(package)
        if found is None or found.origin is None:
            raise RunnerError(f"model config {spec}: package {package} is not installed; run make setup")
        path = Path(os.path.normpath(Path(found.origin).parent / ".mim" / "configs" / rel))
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise RunnerError(f"model config {spec} not found (looked at {path}); fix the model entry's config")
    return path


@functools.lru_cache(maxsize=None)
def _pristine_config(spec: str):
    from mmengine.config import Config
    return Config.fromfile(str(resolve_config_path(spec)))


def load_config(spec: str):
    """A private deep copy: MMDet/MMPose builders edit configs in place (e.g.
    `backbone.init_cfg = None`), and an edited shared copy would change
    config_digest, hence every cache key, within one process."""
    return copy.deepcopy(_pristine_config(spec))


def build_test_pipeline(model, default_scope: str, steps=None):
    """(scope, pipeline): the model's own test pipeline (or `steps`), built in its
    registry scope, as MMPose's and MMDetection's inference functions build it."""
    from mmcv.transforms import Compose
    from mmengine.registry import DefaultScope
    scope = model.cfg.get("default_scope", default_scope)
    with DefaultScope.overwrite_default_scope(scope):
        return scope, Compose(steps if steps is not None else model.cfg.test_dataloader.dataset.pipeline)


@functools.lru_cache(maxsize=None)
def config_digest(spec: str) -> str:
    """Hash of the fully resolved model config (its _base_ chain included)."""
    return digest(_pristine_config(spec).to_dict())


@functools.lru_cache(maxsize=None)
def dataset_meta(spec: str) -> dict:
    """Keypoint names, skeleton and colours of a pose model config's dataset."""
    from mmpose.apis.inference import dataset_meta_from_config
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    meta = dataset_meta_from_config(load_config(spec), dataset_mode="train")
    return meta or parse_pose_metainfo(dict(from_file="configs/_base_/datasets/coco.py"))


def resolve_device(device_cfg) -> str:
    kind = str(device_cfg.type)
    if kind == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RunnerError("device=cuda, but torch sees no GPU (a CPU-only torch, or no driver): "
                              "use device=cpu or device=auto")
        return f"cuda:{device_cfg.get('index', 0)}"
    if kind == "cpu":
        return "cpu"
    raise RunnerError(f"device type {kind!r} is unknown: use device=auto, device=cpu or device=cuda")


BACKENDS = ("pytorch", "onnxruntime", "openvino")
PRECISIONS = ("f32", "bf16", "f16", "int8")


# The library each backend runs networks with: its version changes their numbers.
RUNTIME_LIBS = {"pytorch": (), "onnxruntime": ("onnxruntime",), "openvino": ("openvino",)}


@dataclass(frozen=True)
class Backend:
    """What runs the networks, on which device, at which precision, and why (for
    the manifest). `calibration` is the int8 calibration folder and `calibrated`
    its content digest."""
    name: str
    precision: str = "f32"
    why: str = ""
    calibration: str | None = None
    calibrated: str | None = None

    def key(self, device: str) -> dict:
        """What of the backend and the device goes into the model stages' cache
        keys: the backend, its runtime's version, the kind of device (a CPU and
        a GPU add float32 terms in other orders) and any reduced precision."""
        from runner.versions import versions
        runtime = RUNTIME_LIBS[self.name] + (("nncf",) if self.precision == "int8" else ())
        reduced = {"precision": self.precision} if self.precision != "f32" else {}
        return {"backend": self.name, "device": device.split(":")[0], "runtime": versions(*runtime), **reduced,
                **({"calibration": self.calibrated} if self.precision == "int8" else {})}

    def describe(self) -> dict:
        return {"name": self.name, "precision": self.precision, "why": self.why,
                **({"calibration": self.calibration, "calibrated": self.calibrated}
                   if self.precision == "int8" else {})}

    @classmethod
    def recorded(cls, described: dict) -> "Backend":
        """The backend a manifest recorded (describe()), taken as it is."""
        return cls(described["name"], described.get("precision", "f32"), f"recorded: {described.get('why', '')}",
                   described.get("calibration"), described.get("calibrated"))


def choose_backend(backend_cfg, device: str) -> Backend:
    """The backend of a run. `auto` keeps float32 results: ONNX Runtime on the CPU,
    PyTorch on a GPU; reduced precision only when the user asks for it (then auto
    picks the backend that runs it: OpenVINO on the CPU, PyTorch autocast on a GPU)."""
    name, precision = str(backend_cfg.name), str(backend_cfg.get("precision", "f32"))
    gpu = device.startswith("cuda")
    if precision not in PRECISIONS:
        raise RunnerError(f"backend.precision={precision} is unknown: use " + ", ".join(PRECISIONS))
    if name == "auto":
        if precision == "f32":
            name, why = ("pytorch", "auto: a CUDA GPU, where PyTorch runs the networks") if gpu else \
                ("onnxruntime", "auto: the CPU, float32: ONNX Runtime (OpenVINO f32 measured no faster, "
                                "BENCHMARKS.md)")
        elif gpu and precision != "int8":
            name, why = "pytorch", f"auto: {precision} asked for, on a CUDA GPU: PyTorch autocast"
        else:
            name, why = "openvino", f"auto: {precision} asked for, on the CPU: OpenVINO"
    elif name in BACKENDS:
        why = f"backend={name} asked for"
    else:
        raise RunnerError(f"backend {name!r} is unknown: use backend=auto, "
                          + ", ".join(f"backend={b}" for b in BACKENDS))
    if name == "onnxruntime" and precision != "f32":
        raise RunnerError(f"backend=onnxruntime runs float32 only: use backend=openvino for "
                          f"backend.precision={precision}, or backend.precision=f32")
    if name == "pytorch" and precision == "int8":
        raise RunnerError("backend.precision=int8 is OpenVINO's (NNCF): use backend=openvino")
    if name == "openvino" and gpu:
        raise RunnerError("backend=openvino runs on the CPU here: use device=cpu, or backend=pytorch on the GPU")
    if name == "openvino":
        from runner.backends.openvino import check_precision
        check_precision(precision)
    calibration = calibrated = None
    if precision == "int8":
        from runner.backends.openvino import calibration_digest
        calibration = backend_cfg.get("calibration")
        calibrated = calibration_digest(calibration)
    return Backend(name, precision, why, calibration and str(Path(str(calibration)).expanduser().resolve()), calibrated)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


@contextlib.contextmanager
def quiet_openmmlab():
    """mmengine logs (and prints) every checkpoint load and weight init; keep
    the console for our own output."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _init_pytorch(registry: str, config_spec: str, checkpoint: str, device: str, owner: str):
    install_allow_list()
    with refused_globals_explained(checkpoint, owner), quiet_openmmlab():
        if registry == "mmdet":
            from mmdet.apis import init_detector
            return init_detector(str(resolve_config_path(config_spec)), checkpoint, device=device)
        from mmpose.apis import init_model
        return init_model(str(resolve_config_path(config_spec)), checkpoint, device=device)


def model_for(cfg, role: str, estimator_cls, checkpoint, device: str, backend: Backend):
    """The model of `role` ("detect" or "pose") in the run config `cfg`, with
    its network on `backend`."""
    entry = cfg[role].model
    return load_model(estimator_cls.library, str(entry.config), str(checkpoint.path), checkpoint.sha256, device,
                      backend.name, str(Path(str(cfg.backend.dir)).expanduser()),
                      tuple(int(v) for v in entry.input_size), f"{role}.model.checkpoint", backend.precision,
                      backend.calibration, estimator_cls)


@functools.lru_cache(maxsize=4)
def load_model(registry: str, config_spec: str, checkpoint: str, checkpoint_sha256: str, device: str,
               backend: str = "pytorch", onnx_dir: str = "", input_size: tuple[int, int] = (0, 0),
               owner: str = "the model's checkpoint", precision: str = "f32", calibration: str | None = None,
               estimator_cls=None):
    """An MMDetection (registry="mmdet") or MMPose model, once per process (sequential
    sweep jobs reuse it), with its network on `backend` at `precision`: PyTorch
    (autocast below f32), or the ONNX export (made once per checkpoint; input_size =
    (width, height) of the export) in ONNX Runtime or OpenVINO. int8 quantizes on the
    `calibration` images, pre-processed by `estimator_cls`."""
    from runner.backends.export import exported, swap_network
    model = _init_pytorch(registry, config_spec, checkpoint, device, owner)
    if backend == "pytorch":
        if precision == "f32":
            return model
        from runner.backends.pytorch import AutocastNetwork
        return swap_network(model, AutocastNetwork(model, precision))
    key = {"name": Path(checkpoint).stem.split("_local")[0][:48], "checkpoint": checkpoint_sha256,
           "config": config_digest(config_spec)}
    width, height = input_size
    with quiet_openmmlab():
        path = exported(model, key, Path(onnx_dir), (1, 3, height, width))
    threads = torch.get_num_threads()
    if backend == "onnxruntime":
        from runner.backends.onnxruntime import OrtNetwork
        return swap_network(model, OrtNetwork(path, threads))
    from runner.backends import openvino
    if precision == "int8":
        with quiet_openmmlab():
            path = openvino.quantized(path, openvino.Calibration(calibration, model, estimator_cls))
    return swap_network(model, openvino.OvNetwork(path, threads, precision))

"""The reference engine's models: MMDetection / MMPose models built from
registry entries with torch (once per process: sequential sweep jobs reuse
them), checkpoints loaded safely, their network on PyTorch (autocast below
f32) or swapped for the ONNX export on ONNX Runtime / OpenVINO; and the
export itself, made here (the one place torch builds a model to export it)."""
from __future__ import annotations

import contextlib
import functools
import io
import logging
from pathlib import Path

from runner.backends.files import ExportSpec, verified_export
from runner.checkpoints.safe_load import install_allow_list, refused_globals_explained
from runner.models.configs import load_config, resolve_config_path


def build_test_pipeline(model, default_scope: str, steps=None):
    """(scope, pipeline): the model's own test pipeline (or `steps`), built in its
    registry scope, as MMPose's and MMDetection's inference functions build it."""
    from mmcv.transforms import Compose
    from mmengine.registry import DefaultScope
    scope = model.cfg.get("default_scope", default_scope)
    with DefaultScope.overwrite_default_scope(scope):
        return scope, Compose(steps if steps is not None else model.cfg.test_dataloader.dataset.pipeline)


@functools.lru_cache(maxsize=None)
def dataset_meta(spec: str) -> dict:
    """MMPose's dataset meta of a pose model config (its metrics use it)."""
    from mmpose.apis.inference import dataset_meta_from_config
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    meta = dataset_meta_from_config(load_config(spec), dataset_mode="train")
    return meta or parse_pose_metainfo(dict(from_file="configs/_base_/datasets/coco.py"))


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


def set_threads(threads: int | None) -> None:
    if threads:
        import torch
        torch.set_num_threads(int(threads))


def build_model(entry, library: str):
    """The architecture from the entry's config, with no pretrained download."""
    from mmengine.registry import init_default_scope
    from runner.models.configs import load_config

    cfg = load_config(entry["config"])
    if "init_cfg" in cfg.model.get("backbone", {}):
        cfg.model.backbone.init_cfg = None
    init_default_scope(cfg.get("default_scope", library))
    if library == "mmdet":
        from mmdet.registry import MODELS
        model = MODELS.build(cfg.model)
    else:
        from mmpose.models import build_pose_estimator
        model = build_pose_estimator(cfg.model)
    model.cfg = cfg
    return model


def _init_pytorch(registry: str, config_spec: str, checkpoint: str, device: str, owner: str):
    install_allow_list()
    with refused_globals_explained(checkpoint, owner), quiet_openmmlab():
        if registry == "mmdet":
            from mmdet.apis import init_detector
            return init_detector(str(resolve_config_path(config_spec)), checkpoint, device=device)
        from mmpose.apis import init_model
        return init_model(str(resolve_config_path(config_spec)), checkpoint, device=device)


def refuse_misfit(spec: ExportSpec) -> None:
    """Never a model (or an export) from a checkpoint of another model (runner/models/fit.py;
    a run checks it, naming its model entry, before any image is read)."""
    from runner.models.fit import check_fits
    check_fits(spec.checkpoint, spec.checkpoint_sha256, spec.config, spec.library, spec.owner)


def ensure_export(spec: ExportSpec) -> Path:
    """The verified export of `spec`, exported first (with torch) unless it is there."""
    return verified_export(spec, make_export)


def make_export(spec: ExportSpec, path: Path) -> None:
    """Export the model of `spec` to `path` with its description for the native engine."""
    from runner.backends.export import export
    from runner.native.describe import described_record
    refuse_misfit(spec)
    model = _init_pytorch(spec.library, spec.config, spec.checkpoint, "cpu", spec.owner)
    with quiet_openmmlab():
        export(model, path, (1, 3, spec.input_size[1], spec.input_size[0]), described_record(spec.config))


@functools.lru_cache(maxsize=4)
def load_model(spec: ExportSpec, device: str, backend: str = "pytorch", precision: str = "f32",
               threads: int | None = None, calibration: str | None = None, estimator_cls=None):
    """The MMDetection / MMPose model of `spec`, with its network on `backend` at
    `precision`: PyTorch (autocast below f32), or the verified ONNX export (made
    once per checkpoint) in ONNX Runtime or OpenVINO. int8 quantizes on the
    `calibration` images, pre-processed by `estimator_cls`."""
    from runner.backends.export import TorchAdapter, swap_network
    from runner.backends.files import record
    from runner.backends.network import Compiled, Network
    refuse_misfit(spec)
    model = _init_pytorch(spec.library, spec.config, spec.checkpoint, device, spec.owner)
    if backend == "pytorch":
        if precision == "f32":
            return model
        from runner.backends.pytorch import AutocastNetwork
        return swap_network(model, AutocastNetwork(model, precision))
    path = ensure_export(spec)
    if precision == "int8":
        from runner.backends import openvino
        path = openvino.quantized(path, openvino.Calibration(calibration, reference_inputs(model, estimator_cls)),
                                  estimator_cls.int8_preset)
    compiled = Compiled(path.parent, record(path)["sha256"]) if precision != "int8" else None
    return swap_network(model, TorchAdapter(Network(path, backend, threads, precision, spec.owner, compiled), path))


def reference_inputs(model, estimator_cls):
    """images -> the network inputs (numpy) the reference engine makes of them
    (per-box families: each image whole as its box)."""
    import numpy as np
    from mmengine.dataset import pseudo_collate

    def prepare(images: list) -> list:
        estimator = estimator_cls(model)
        items = images if estimator.unit == "image" else \
            [(i, np.array([0, 0, i.shape[1], i.shape[0]], dtype=np.float32)) for i in images]
        return [model.data_preprocessor(pseudo_collate([data]), False)["inputs"].numpy()
                for data in estimator.prepare(items)]
    return prepare

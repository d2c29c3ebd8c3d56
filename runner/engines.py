"""Which engine runs a model, decided in one place, and what each engine puts
in its cache keys:

- native: runner/native around an ONNX network (the runner's verified export
  of a registry checkpoint, or the user's ONNX file) on ONNX Runtime or
  OpenVINO; no torch, mmcv, mmdet or mmpose, unless the export must first be
  made. Chosen whenever the backend runs ONNX files and the family has a
  native estimator whose config it can reproduce (describe.from_config).
- mmpose: MMPose's / MMDetection's own models (runner/models), the reference
  the native engine is tested against; on PyTorch, or with their network part
  swapped for the export on ONNX Runtime / OpenVINO (RTMO, InterNet).

A model stage's key: its checkpoint's (or ONNX file's) sha256; the config's
identity (or the ONNX file's description sources) and flip test; the engine,
its code version and the library versions that change its numbers."""
from __future__ import annotations

import functools
from pathlib import Path

from runner.errors import RunnerError
from runner.hashing import sha256_file
from runner.models.configs import config_identity, load_config
from runner.versions import versions

# Library versions that change a reference model's numbers, by the library it runs in.
MODEL_LIBS = {"mmdet": ("torch", "mmcv", "mmengine", "mmdet", "cv2", "numpy"),
              "mmpose": ("torch", "mmcv", "mmengine", "mmpose", "cv2", "numpy")}
NATIVE_LIBS = ("cv2", "numpy")
DESCRIBED_BY = ("input_size", "mean", "std", "bgr_to_rgb", "pad_val", "simcc_split_ratio", "keypoints")


@functools.lru_cache(maxsize=None)
def native_description(config: str) -> dict | None:
    """The native engine's description of a registry config (None: it cannot run it)."""
    from runner.native.describe import from_config
    described = from_config(config)
    return described.as_dict() if described is not None else None


@functools.lru_cache(maxsize=8)
def network(path: str, backend: str, threads: int | None, precision: str, owner: str):
    """A compiled network, once per process (sequential sweep jobs reuse it)."""
    from runner.backends.network import Network
    return Network(path, backend, threads, precision, owner)


def forget_models() -> None:
    """Drop every model and network this process holds (as a new process starts)."""
    from runner.models.loading import load_model
    network.cache_clear()
    load_model.cache_clear()


class Engine:
    """How one role's model of a run is run (ModelStage asks it for keys and an estimator)."""
    name = ""
    runs = ""  # which of the family row's estimators it runs: "reference" or "native"

    def __init__(self, ctx, role: str, row):
        self.ctx, self.role, self.row = ctx, role, row
        self.cfg = ctx.cfg[role]
        self.entry = self.cfg.model
        self.owner = f"download.checkpoints.{self.entry.name}" if \
            (ctx.cfg.download.get("checkpoints") or {}).get(str(self.entry.name)) else \
            f"{role}.model.{row.checkpoint_key}"

    @property
    def estimator_cls(self):
        return getattr(self.row, self.runs)

    def flip_test(self):
        """pose.flip_test as asked (None: the model's own), for the key."""
        value = self.ctx.cfg[self.role].get("flip_test") if self.role == "pose" else None
        return None if value is None else bool(value)

    def params(self) -> dict:
        return {"config": config_identity(str(self.entry.config)), "flip_test": self.flip_test()}

    def code(self) -> dict:
        return {"engine": self.name, "version": self.estimator_cls.code_version, "family": str(self.entry.family),
                **self.ctx.backend.key(self.ctx.device)}

    def build(self, checkpoint):
        raise NotImplementedError


class ReferenceEngine(Engine):
    name, runs = "mmpose", "reference"

    def code(self) -> dict:
        return {**super().code(), "libs": versions(*MODEL_LIBS[self.estimator_cls.library])}

    def build(self, checkpoint):
        from runner.models.loading import load_model, set_threads
        backend, cfg = self.ctx.backend, self.ctx.cfg
        set_threads(cfg.device.get("threads"))
        model = load_model(export_spec(cfg, self.role, checkpoint, self.estimator_cls.library, self.owner),
                           self.ctx.device, backend.name, backend.precision, cfg.device.get("threads"),
                           backend.calibration, self.estimator_cls)
        if self.role == "pose" and getattr(model, "test_cfg", None) is not None:  # the model is shared: set, always
            own = (load_config(str(self.entry.config)).model.get("test_cfg") or {}).get("flip_test", False)
            model.test_cfg["flip_test"] = own if self.flip_test() is None else self.flip_test()
        return self.estimator_cls(model)


class NativeEngine(Engine):
    name, runs = "native", "native"

    def params(self) -> dict:
        if not self.row.onnx_file:
            return super().params()
        if hasattr(self.estimator_cls, "key_params"):  # a family that says which entry keys change its numbers
            return {**self.estimator_cls.key_params(self.entry), "flip_test": self.flip_test()}
        pipeline = Path(str(self.entry.path)).expanduser().parent / "pipeline.json"
        return {"described_by": {k: _plain(self.entry.get(k)) for k in DESCRIBED_BY},
                "pipeline.json": sha256_file(pipeline) if pipeline.is_file() else None, "flip_test": self.flip_test()}

    def code(self) -> dict:
        made = {} if self.row.onnx_file else {"export": versions("torch", "mmcv", "mmdet", "mmpose", "onnx")}
        return {**super().code(), "libs": versions(*NATIVE_LIBS), **made}

    def build(self, checkpoint):
        """The estimator: the network file (the user's, or the verified export,
        made first if need be), described, compiled at the run's precision."""
        from runner.backends.files import record, verified_export
        backend, cfg = self.ctx.backend, self.ctx.cfg
        if self.row.onnx_file:
            from runner.native.describe import runners_own
            path = Path(checkpoint.path)
            structure = (runners_own(path) or (None, None))[1]
        else:
            path = verified_export(export_spec(cfg, self.role, checkpoint, self.row.reference.library, self.owner),
                                   _make_export)
            structure = record(path)["structure"]
        threads = cfg.device.get("threads")
        compiled = network(str(path), backend.name, threads, "f32" if backend.precision == "int8" else
                           backend.precision, self.owner)
        if self.row.onnx_file:
            self.estimator_cls.check(compiled, self.entry)
        described = self._describe(compiled, path)
        if backend.precision == "int8":
            from runner.backends import openvino
            prepare = lambda images: self.estimator_cls.network_inputs(described, images)  # noqa: E731
            path = openvino.quantized(path, openvino.Calibration(backend.calibration, prepare),
                                      None if not self.row.onnx_file else Path(str(cfg.backend.dir)).expanduser())
            compiled = network(str(path), backend.name, threads, backend.precision, self.owner)
        return self.estimator_cls.build(compiled, described, self.entry, self._flip(described), structure)

    def _describe(self, compiled, path: Path):
        from runner.backends.files import record
        from runner.native import describe
        if not self.row.onnx_file:
            return describe.from_dict(record(path)["model"] or native_description(str(self.entry.config)))
        if hasattr(self.estimator_cls, "describe"):  # a family that describes its own networks (MediaPipe's)
            return self.estimator_cls.describe(self.entry, compiled)
        if self.estimator_cls.unit == "image":
            return describe.onnx_detector(self.entry, path, compiled.fixed_input_size())
        widths = [o.shape[-1] for o in compiled.outputs if o.shape and isinstance(o.shape[-1], int)]
        return describe.onnx_topdown(self.entry, path, compiled.fixed_input_size(), widths[0] if widths else None)

    def _flip(self, described) -> bool:
        asked = self.flip_test()
        return getattr(described, "flip_test", False) if asked is None else asked


def _plain(value):
    from omegaconf import OmegaConf
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def export_spec(cfg, role: str, checkpoint, library: str, owner: str):
    from runner.backends.files import ExportSpec
    entry = cfg[role].model
    return ExportSpec.of(str(checkpoint.path), checkpoint.sha256, str(entry.config), library, entry.input_size,
                         str(Path(str(cfg.backend.dir)).expanduser()), owner)


def engine_for(ctx, role: str, row) -> Engine:
    """THE decision: native where the backend runs ONNX files and the family
    has a native estimator for this model; MMPose's own otherwise."""
    if row.native is not None and ctx.backend.runs_onnx and (row.onnx_file or describable(ctx, role, row)):
        return NativeEngine(ctx, role, row)
    if row.reference is None:
        raise RunnerError(f"{role}/model={ctx.cfg[role].model.name} is an ONNX model file: it runs with backend="
                          "onnxruntime or backend=openvino")
    return ReferenceEngine(ctx, role, row)


def describable(ctx, role: str, row) -> bool:
    """Whether the native engine can run this registry model: its export's record
    says so when the export is there (no mmengine), else its config does."""
    checkpoint = ctx.checkpoint(role)
    if checkpoint is not None:
        from runner.backends.files import record
        path = export_spec(ctx.cfg, role, checkpoint, row.reference.library, "").path
        try:
            return record(path)["model"] is not None
        except (OSError, ValueError, KeyError):
            pass
    return native_description(str(ctx.cfg[role].model.config)) is not None


def _make_export(spec, path) -> None:
    from runner.models.loading import make_export  # torch: only when an export must be made
    make_export(spec, path)

"""Which engine runs a model, decided in one place, and what each engine's
results are computed from (its `reads()`, runner/stages/reads.py):

- native: runner/native around an ONNX network (the runner's verified export
  of a registry checkpoint, or the user's ONNX file) on ONNX Runtime or
  OpenVINO; no torch, mmcv, mmdet or mmpose, unless the export must first be
  made. Chosen whenever the backend runs ONNX files and the family has a
  native estimator whose config it can reproduce (describe.from_config).
  It reads: the checkpoint (or the ONNX file, its external data, the
  pipeline.json and the runner's record beside it), the model config, the
  keypoint set's file; it computes with the resolved description (in the
  key: what the engine really runs with) and the flip test.
- mmpose: MMPose's / MMDetection's own models (runner/models), the reference
  the native engine is tested against; on PyTorch, or with their network part
  swapped for the export on ONNX Runtime / OpenVINO (RTMO, InterNet). It
  reads the checkpoint and the model config.

Both add: the estimator class (its code_version), the backend, the kind of
device and the precision, the int8 calibration images, and the library
versions that change their numbers."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from runner.errors import RunnerError
from runner.models.configs import config_identity, load_config
from runner.stages.reads import FileRead, Reads

# Library versions that change a reference model's numbers, by the library it runs in.
MODEL_LIBS = {"mmdet": ("torch", "mmcv", "mmengine", "mmdet", "cv2", "numpy"),
              "mmpose": ("torch", "mmcv", "mmengine", "mmpose", "cv2", "numpy")}
NATIVE_LIBS = ("cv2", "numpy")
EXPORT_LIBS = ("torch", "mmcv", "mmdet", "mmpose", "onnx")  # what makes the runner's exports (their numbers)


@functools.lru_cache(maxsize=None)
def native_description(config: str) -> dict | None:
    """The native engine's description of a registry config (None: it cannot run it)."""
    from runner.native.describe import from_config
    described = from_config(config)
    return described.as_dict() if described is not None else None


@functools.lru_cache(maxsize=8)
def network(path: str, backend: str, threads: int | None, precision: str, owner: str, compiled=None):
    """A compiled network, once per process (sequential sweep jobs reuse it);
    `compiled`: where its compiled forms are kept (backends.network.Compiled)."""
    from runner.backends.network import Network
    return Network(path, backend, threads, precision, owner, compiled)


def forget_models() -> None:
    """Drop every model and network this process holds (as a new process starts)."""
    from runner.models.loading import load_model
    network.cache_clear()
    load_model.cache_clear()


class Engine:
    """How one role's model of a run is run (ModelStage asks it for what its
    results are computed from, and for the estimator)."""
    name = ""
    runs = ""  # which of the family row's estimators it runs: "reference" or "native"

    def __init__(self, ctx, role: str, row):
        self.ctx, self.role, self.row = ctx, role, row
        self.cfg = ctx.cfg[role]
        self.entry = self.cfg.model
        self.owner = f"download.checkpoints.{self.entry.name}" if \
            (ctx.cfg.download.get("checkpoints") or {}).get(str(self.entry.name)) else \
            f"{role}.model.{row.checkpoint_key}"
        self._estimator = None

    @property
    def estimator_cls(self):
        return getattr(self.row, self.runs)

    def flip_test(self):
        """pose.flip_test as asked (None: the model's own)."""
        value = self.ctx.cfg[self.role].get("flip_test") if self.role == "pose" else None
        return None if value is None else bool(value)

    def estimator(self, checkpoint):
        """The estimator (built once, only when something must be computed or described)."""
        if self._estimator is None:
            self._estimator = self.build(checkpoint)
        return self._estimator

    # -- what the results are computed from --------------------------------------
    def reads(self, checkpoint) -> Reads:
        backend = self.ctx.backend
        files, params = self.files(checkpoint), self.params(checkpoint)
        if backend.precision == "int8":
            files["calibration images"] = FileRead(str(backend.calibration), backend.calibrated)
            params["int8 preset"] = self.estimator_cls.int8_preset
        runtime = backend.runtime_libs()
        return Reads(files, params, (self.estimator_cls,), (*self.libs(), *runtime),
                     backend.runs_on(self.ctx.device))

    def files(self, checkpoint) -> dict[str, FileRead]:
        return {"checkpoint": FileRead(str(checkpoint.path), checkpoint.sha256),
                "model config": FileRead(str(self.entry.config), config_identity(str(self.entry.config)))}

    def params(self, checkpoint) -> dict:
        raise NotImplementedError

    def libs(self) -> tuple[str, ...]:
        raise NotImplementedError

    def build(self, checkpoint):
        raise NotImplementedError


class ReferenceEngine(Engine):
    name, runs = "mmpose", "reference"

    def params(self, checkpoint) -> dict:
        flip = {"flip_test": self.flip_test()} if self.role == "pose" else {}  # None: the config's own (in the key)
        return {"engine": self.name, **flip}

    def libs(self) -> tuple[str, ...]:
        made = ("onnx",) if self.ctx.backend.runs_onnx else ()  # the network runs as the runner's export
        return (*MODEL_LIBS[self.estimator_cls.library], *made)

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

    def files(self, checkpoint) -> dict[str, FileRead]:
        from runner.native import describe
        if not self.row.onnx_file:
            files = super().files(checkpoint)
        else:
            path = Path(checkpoint.path)
            files = {"model file": FileRead(str(path), checkpoint.sha256),
                     **{f"external data {name}": FileRead(str(path.parent / name), sha)
                        for name, sha in checkpoint.external}}
            own = describe.runners_own(path, checkpoint.sha256)
            pipeline = describe.pipeline_file(path)
            if own is not None:  # the runner's record of its export describes it (pipeline.json is not read)
                files["export record"] = FileRead(str(own.path), self.ctx.hasher.sha256(own.path))
            elif pipeline is not None:
                files["pipeline.json"] = FileRead(str(pipeline), self.ctx.hasher.sha256(pipeline))
        kept = self.keypoint_set(checkpoint)
        if kept is not None:
            from runner.native.keypoints import set_file
            files["keypoint set"] = FileRead(str(set_file(kept)), self.ctx.hasher.sha256(set_file(kept)))
        return files

    def params(self, checkpoint) -> dict:
        """The resolved description (what the engine computes with, from every
        source: the entry's keys, pipeline.json, the file, the config) and the
        flip test it runs."""
        described = self.description(checkpoint)
        flip = {"flip_test": self._flip(described)} if self.role == "pose" else {}
        return {"engine": self.name, "description": as_dict(described), **flip}

    def libs(self) -> tuple[str, ...]:
        return NATIVE_LIBS if self.row.onnx_file else (*NATIVE_LIBS, *EXPORT_LIBS)

    def keypoint_set(self, checkpoint) -> str | None:
        """The keypoint set a pose model's results are in (its flip pairs are read from its file)."""
        if self.role != "pose" or self.estimator_cls.unit != "box":
            return None
        if self.row.onnx_file:
            kept = self.estimator(checkpoint).keypoints
            return getattr(kept, "name", kept)  # a KeypointSet, or a set's name
        from runner.native.keypoints import BY_COUNT
        count = self.description(checkpoint).num_keypoints
        return str(self.entry.get("keypoints") or BY_COUNT.get(count, "coco"))

    def description(self, checkpoint):
        """What the native engine needs of the model: an ONNX file's from its
        sources (the network compiled to read its shapes); a registry model's
        from its export's record, written by this describer (else described anew)."""
        from runner.native import describe
        if self.row.onnx_file:
            return self.estimator(checkpoint).model
        path = export_spec(self.ctx.cfg, self.role, checkpoint, self.row.reference.library, self.owner).path
        return describe.from_dict(current_description(path, str(self.entry.config)))

    def build(self, checkpoint):
        """The estimator: the network file (the user's, or the verified export,
        made first if need be), described, checked, compiled at the run's precision."""
        from runner.backends.files import record, verified_export
        from runner.native import describe
        backend, cfg = self.ctx.backend, self.ctx.cfg
        own = None
        if self.row.onnx_file:
            path = Path(checkpoint.path)
            own = describe.runners_own(path, checkpoint.sha256)
            structure = own.structure if own is not None else None
        else:
            path = verified_export(export_spec(cfg, self.role, checkpoint, self.row.reference.library, self.owner),
                                   _make_export)
            structure = record(path)["structure"]
        threads = cfg.device.get("threads")
        compiled = network(str(path), backend.name, threads, "f32" if backend.precision == "int8" else
                           backend.precision, self.owner, self._compiled(checkpoint, path))
        if self.row.onnx_file:
            self.estimator_cls.check(compiled, self.entry, own)
        described = self._describe(compiled, path, own)
        if backend.precision == "int8":
            from runner.backends import openvino
            prepare = lambda images: self.estimator_cls.network_inputs(described, images)  # noqa: E731
            path = openvino.quantized(path, openvino.Calibration(backend.calibration, prepare),
                                      self.estimator_cls.int8_preset,
                                      Path(str(cfg.backend.dir)).expanduser() if self.row.onnx_file else None)
            compiled = network(str(path), backend.name, threads, backend.precision, self.owner)
        return self.estimator_cls.build(compiled, described, self.entry, self._flip(described), structure)

    def _compiled(self, checkpoint, path: Path):
        """Where the network's compiled forms are kept, keyed by its content: a
        user's file with its external data, or the export's recorded sha256."""
        from runner.backends.files import record
        from runner.backends.network import Compiled
        from runner.hashing import digest
        identity = digest([checkpoint.sha256, list(checkpoint.external)]) if self.row.onnx_file else \
            record(path)["sha256"]
        return Compiled(Path(str(self.ctx.cfg.backend.dir)).expanduser(), identity)

    def _describe(self, compiled, path: Path, own):
        from runner.native import describe
        if not self.row.onnx_file:
            return describe.from_dict(current_description(path, str(self.entry.config)))
        if hasattr(self.estimator_cls, "describe"):  # a family that describes its own networks (MediaPipe's)
            return self.estimator_cls.describe(self.entry, compiled)
        if self.estimator_cls.unit == "image":
            return describe.onnx_detector(self.entry, path, compiled.fixed_input_size(), own)
        widths = [o.shape[-1] for o in compiled.outputs if o.shape and isinstance(o.shape[-1], int)]
        return describe.onnx_topdown(self.entry, path, compiled.fixed_input_size(), widths[0] if widths else None,
                                     own)

    def _flip(self, described) -> bool:
        asked = self.flip_test()
        return getattr(described, "flip_test", False) if asked is None else asked


def as_dict(described) -> dict:
    """A description as plain data (the native engine's own, or a family's dataclass)."""
    import dataclasses
    return described.as_dict() if hasattr(described, "as_dict") else dataclasses.asdict(described)


def current_description(export: Path, config: str) -> dict | None:
    """A registry model's description, as this describer makes it: its export's
    record's when this describer wrote it; else (the describer changed since, or
    the export is not made yet) described from the config, and a record that is
    there is brought up to date, so the next run reads it there again."""
    from runner import atomic
    from runner.backends.files import record
    from runner.native.describe import described_record, describer
    try:
        kept = record(export)
    except (OSError, ValueError):
        kept = None
    if isinstance(kept, dict) and kept.get("described_by") == describer() and kept.get("config") == config:
        return kept.get("model")
    fresh = {"model": native_description(config), "config": config, "described_by": describer()}
    if isinstance(kept, dict):
        with contextlib.suppress(OSError):  # a read-only backend.dir: described anew each run
            atomic.write_json(export.with_suffix(".json"), {**kept, **fresh})
    return fresh["model"]


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
    """Whether the native engine can run this registry model (its export's
    record says so when this describer wrote it; no mmengine then)."""
    checkpoint = ctx.checkpoint(role)
    config = str(ctx.cfg[role].model.config)
    if checkpoint is None:
        return native_description(config) is not None
    return current_description(export_spec(ctx.cfg, role, checkpoint, row.reference.library, "").path,
                               config) is not None


def _make_export(spec, path) -> None:
    from runner.models.loading import make_export  # torch: only when an export must be made
    make_export(spec, path)

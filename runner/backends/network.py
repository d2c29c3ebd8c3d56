"""An ONNX network run by ONNX Runtime (CPU provider) or OpenVINO (CPU):
numpy in, numpy out, no torch. The one place a session is made, for the
ONNX-native engine and (through export.TorchAdapter) for MMPose's own models
whose network part runs on another backend.

Given a `Compiled` (a folder and the network's content identity), what the
backend makes of a network is kept there, once per network, backend version
and CPU, and verified before each use like an export (backends/files.py):
ONNX Runtime's fully optimized graph, which a session loads without
optimizing again (RTMDet-nano + RTMPose-m: 0.35 s -> 0.05 s a process), and
OpenVINO's compiled networks (its model cache, in a folder of their own whose
files are checked against a record first: OpenVINO itself would load a
damaged one; 1.5 s -> 0.3 s). The same numbers either way (tested)."""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.errors import RunnerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Port:
    name: str
    shape: tuple  # ints, or names / None for dynamic axes


@dataclass(frozen=True)
class Compiled:
    """Where a network's compiled forms are kept (backend.dir) and what they are
    keyed by: the sha256 of the network's content (with its external data)."""
    folder: Path
    identity: str


def default_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Network:
    """`path` compiled by `backend` ("onnxruntime" or "openvino") at `precision`
    (OpenVINO's hint; ONNX Runtime runs float32). `owner` names the config key
    that gave the file, for messages."""

    def __init__(self, path: str | Path, backend: str, threads: int | None = None, precision: str = "f32",
                 owner: str = "the model", compiled: Compiled | None = None):
        self.path, self.backend = Path(path), backend
        threads = int(threads or default_threads())
        try:
            if backend == "onnxruntime":
                self._ort(threads, compiled)
            elif backend == "openvino":
                self._openvino(threads, precision, compiled)
            else:
                raise RunnerError(f"backend={backend} does not run ONNX files: use backend=onnxruntime or openvino")
        except RunnerError:
            raise
        except Exception as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            raise RunnerError(f"{owner}: {self.path} is not a model file {backend} can load ({lines[-1][:200] if lines else type(err).__name__}): "
                              "pass an .onnx file (an MMDeploy end2end export, or the runner's own; MediaPipe's "
                              "models: their .onnx or, on OpenVINO, .tflite)") from None

    def _ort(self, threads: int, compiled: Compiled | None) -> None:
        import onnxruntime as ort
        source = self.path if compiled is None else optimized_graph(self.path, compiled)
        options = ort_options(threads, optimize=compiled is None)
        session = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        self.inputs = [Port(i.name, tuple(i.shape)) for i in session.get_inputs()]
        self.outputs = [Port(o.name, tuple(o.shape)) for o in session.get_outputs()]
        names = [o.name for o in self.outputs]
        first = self.inputs[0].name
        self._run = lambda batch: session.run(names, {first: batch})

    def _openvino(self, threads: int, precision: str, kept: Compiled | None) -> None:
        from runner.backends.openvino import HINTS, core  # the precision was checked by backends.table
        settings = {"INFERENCE_PRECISION_HINT": HINTS[precision], "INFERENCE_NUM_THREADS": threads,
                    "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        engine = core()  # first: OpenVINO imported with its telemetry off (it would write into ~/intel)
        if kept is None:
            compiled = engine.compile_model(str(self.path), "CPU", settings)
        else:
            with openvino_cache(self.path, kept, precision, threads) as folder:
                compiled = engine.compile_model(str(self.path), "CPU",
                                                {**settings, **({"CACHE_DIR": str(folder)} if folder else {})})
        request = compiled.create_infer_request()

        def shape(port) -> tuple:
            return tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())

        self.inputs = [Port(p.get_any_name(), shape(p)) for p in compiled.inputs]
        self.outputs = [Port(p.get_any_name(), shape(p)) for p in compiled.outputs]
        ports = list(compiled.outputs)

        def run(batch: np.ndarray) -> list[np.ndarray]:
            result = request.infer({0: batch})
            return [np.array(result[p], dtype=np.float32, copy=True) for p in ports]
        self._run = run

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    @property
    def channels_last(self) -> bool:
        """Whether the image input is NHWC (MediaPipe's, TensorFlow's) rather than NCHW (PyTorch's)."""
        shape = self.inputs[0].shape
        return len(shape) == 4 and shape[3] in (1, 3) and shape[1] not in (1, 3)

    def fixed_input_size(self) -> tuple[int, int] | None:
        """(w, h) when the file fixes its input's height and width, else None."""
        shape = self.inputs[0].shape
        h, w = ((shape[1], shape[2]) if self.channels_last else (shape[2], shape[3])) if len(shape) == 4 \
            else (None, None)
        return (w, h) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None

    def fixed_batch(self) -> int | None:
        first = self.inputs[0].shape[0] if self.inputs[0].shape else None
        return first if isinstance(first, int) and first > 0 else None


def ort_options(threads: int, optimize: bool = True, save_to: Path | None = None):
    """ONNX Runtime's session options: every graph optimization, or none (a graph
    it optimized before); `save_to`: write the optimized graph there, its
    weights in a file beside it (`.bin`), which a session maps rather than reads."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    level = ort.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         save_to.with_suffix(".bin").name)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.disable_telemetry_events()
    return options


def optimized_graph(source: Path, compiled: Compiled) -> Path:
    """ONNX Runtime's fully optimized graph of `source`, made once into
    `compiled.folder` and verified (its files' sha256 against its record) before
    each use. Keyed by the CPU too: the layout optimizations pick kernels and
    block sizes for its instruction sets, so the file is only valid on such a CPU."""
    import onnxruntime as ort
    from runner.backends.files import verified
    from runner.hashing import digest
    key = {"network": compiled.identity, "onnxruntime": ort.__version__, "cpu": cpu_identity()}
    path = compiled.folder / f"{source.stem[:48]}.ort-{digest(key)[:16]}.onnx"
    return verified(path, "optimizing", lambda made: _optimize(source, made, key))


def _optimize(source: Path, path: Path, key: dict) -> None:
    """Save ORT's optimized graph of `source` at `path` (+ its weights, .bin; a
    network with no weight over 1 KiB has none) with its record (files.install)."""
    import onnxruntime as ort
    from runner.backends.files import install
    install(path, lambda made: ort.InferenceSession(str(source), ort_options(1, save_to=made),
                                                    providers=["CPUExecutionProvider"]),
            {"optimized": key, "source": source.name})


@contextlib.contextmanager
def openvino_cache(source: Path, kept: Compiled, precision: str, threads: int):
    """A folder for OpenVINO's compiled networks of `source` (its CACHE_DIR;
    None where backend.dir cannot be written), checked under a lock against the
    record beside it: any file missing, added or altered and the folder is
    emptied, OpenVINO compiles anew and the record is written after it."""
    import shutil

    import openvino  # imported by core() already, with its telemetry off
    from runner import atomic
    from runner.backends import files
    from runner.hashing import digest, sha256_file
    if not atomic.writable(kept.folder):
        yield None
        return
    key = {"network": kept.identity, "openvino": openvino.__version__, "cpu": cpu_identity(),
           "precision": precision, "threads": threads}
    folder = kept.folder / f"{source.stem[:48]}.ov-{digest(key)[:16]}"
    record = folder.with_name(folder.name + ".json")
    kept.folder.mkdir(parents=True, exist_ok=True)
    with atomic.locked(str(folder) + ".lock", f"compiling {source.name}"):
        try:
            recorded = json.loads(record.read_text())["files"]
            found = {p.name for p in folder.iterdir()}
            whole = found == set(recorded) and all(files.HASHER.sha256(folder / n) == sha
                                                   for n, sha in recorded.items())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            whole = False
        if whole:
            with contextlib.suppress(OSError):  # last use, for `cache gc` (as an export's record)
                os.utime(record)
        else:
            if record.exists():
                log.warning("OpenVINO's compiled %s in %s is not as recorded: compiling it again", source.name, folder)
            record.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        yield folder
        if not whole:
            atomic.write_json(record, {"files": {p.name: sha256_file(p) for p in sorted(folder.iterdir())},
                                       "compiled": key, "source": source.name})


@functools.lru_cache(maxsize=1)
def cpu_identity() -> str:
    """The CPU's architecture and instruction sets (Linux: /proc/cpuinfo's flags)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].strip() for line in info if line.startswith(("flags", "Features"))),
                         "")
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()} {flags}"

"""An ONNX network run by ONNX Runtime (CPU provider) or OpenVINO (CPU):
numpy in, numpy out, no torch. The one place a session is made, for the
ONNX-native engine and (through export.TorchAdapter) for MMPose's own models
whose network part runs on another backend."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.errors import RunnerError


@dataclass(frozen=True)
class Port:
    name: str
    shape: tuple  # ints, or names / None for dynamic axes


def default_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Network:
    """`path` compiled by `backend` ("onnxruntime" or "openvino") at `precision`
    (OpenVINO's hint; ONNX Runtime runs float32). `owner` names the config key
    that gave the file, for messages."""

    def __init__(self, path: str | Path, backend: str, threads: int | None = None, precision: str = "f32",
                 owner: str = "the model"):
        self.path, self.backend = Path(path), backend
        threads = int(threads or default_threads())
        try:
            if backend == "onnxruntime":
                self._ort(threads)
            elif backend == "openvino":
                self._openvino(threads, precision)
            else:
                raise RunnerError(f"backend={backend} does not run ONNX files: use backend=onnxruntime or openvino")
        except RunnerError:
            raise
        except Exception as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            raise RunnerError(f"{owner}: {self.path} is not a model file {backend} can load ({lines[-1][:200] if lines else type(err).__name__}): "
                              "pass an .onnx file (an MMDeploy end2end export, or the runner's own; MediaPipe's "
                              "models: their .onnx or, on OpenVINO, .tflite)") from None

    def _ort(self, threads: int) -> None:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: its warnings are not the user's business
        ort.disable_telemetry_events()
        session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.inputs = [Port(i.name, tuple(i.shape)) for i in session.get_inputs()]
        self.outputs = [Port(o.name, tuple(o.shape)) for o in session.get_outputs()]
        names = [o.name for o in self.outputs]
        first = self.inputs[0].name
        self._run = lambda batch: session.run(names, {first: batch})

    def _openvino(self, threads: int, precision: str) -> None:
        from runner.backends.openvino import HINTS, core  # the precision was checked by backends.table
        compiled = core().compile_model(str(self.path), "CPU", {
            "INFERENCE_PRECISION_HINT": HINTS[precision], "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
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

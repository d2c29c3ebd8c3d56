"""ONNX Runtime (CPU provider) for the network part of a model, on the
runner's own verified ONNX export (runner/backends/export.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runner.backends.export import record, unflatten


class OrtNetwork:
    """An exported network in an ONNX Runtime session."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        ort.disable_telemetry_events()
        ort.set_default_logger_severity(3)  # errors only: its warnings (e.g. telemetry) are not the user's business
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.structure = record(path)["structure"]

    def __call__(self, inputs: torch.Tensor):
        outputs = self.session.run(None, {"input": inputs.detach().cpu().numpy().astype(np.float32)})
        flat = [torch.from_numpy(o).to(inputs.device) for o in outputs]
        return unflatten(self.structure, flat)

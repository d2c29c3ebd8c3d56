"""What every model family's estimator shares: MMDetection's / MMPose's own
test pipeline (pre-processing), the model's test_step on batches of inputs of
equal shape, post-processing to plain numpy arrays (what the cache stores),
and `attach`, which turns a cached result into a record's fields without the
model."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from runner.blame import each_input


class Estimator:
    """A family's model run by MMPose / MMDetection themselves: the reference
    engine (the ONNX-native engine, runner/native, is tested against it)."""
    library = "mmpose"   # "mmdet" or "mmpose": the registry and default scope its model lives in
    unit = "image"       # a unit of work is one "image" (frame) or one "box" of an image
    code_version = 1     # bump when what this family caches changes
    int8_preset = "mixed"  # NNCF's preset for its int8 network (backends/openvino.PRESETS): SiLU activations
    # Beyond its imports: the networks on each backend (autocast, ONNX Runtime, OpenVINO), the export, input
    # decoding, what goes into its keys.
    computes_with = ("runner.backends.pytorch", "runner.backends.network", "runner.backends.openvino",
                     "runner.backends.export", "runner.models.loading", "runner.inputs", "runner.engines",
                     "runner.stages.model", "runner.stages.reads")

    def __init__(self, model):
        from runner.models.loading import build_test_pipeline
        self.model = model
        self.scope, self.pipeline = build_test_pipeline(model, self.library, self.pipeline_steps(model))

    # -- what a family defines -------------------------------------------------
    def pipeline_steps(self, model):
        """The test pipeline's steps; None: the model config's own."""
        return None

    def preprocess(self, image: np.ndarray, box: np.ndarray | None = None) -> dict:
        raise NotImplementedError

    def postprocess(self, sample) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def attach(record, slot: int | None, raw: dict[str, np.ndarray], cfg) -> None:
        """Set the record's fields from a (cached) result; `slot` is the box's
        index for per-box families; `cfg` is the run's config."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------
    def prepare(self, inputs: list) -> list[dict]:
        """Pre-process images (unit "image") or (image, box) pairs (unit "box");
        those it cannot take are the inputs' fault (runner.blame)."""
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope(self.scope):
            if self.unit == "box":
                return each_input(lambda pair: self.preprocess(*pair), inputs)
            return each_input(self.preprocess, inputs)

    def predict(self, inputs: list) -> list[dict[str, np.ndarray]]:
        return [self.postprocess(s) for s in forward_equal_shapes(self.model, self.prepare(inputs))]


def forward_equal_shapes(model, prepared: list[dict]) -> list:
    """model.test_step on pre-processed inputs, batching only inputs of equal
    shape: the data preprocessor pads a batch to its largest input, which would
    change a smaller input's numbers. Returns the data samples in input order."""
    import torch
    from mmengine.dataset import pseudo_collate
    groups = defaultdict(list)
    for i, data in enumerate(prepared):
        groups[tuple(data["inputs"].shape)].append(i)
    samples: list = [None] * len(prepared)
    for indices in groups.values():
        with torch.no_grad():
            outputs = model.test_step(pseudo_collate([prepared[i] for i in indices]))
        for i, out in zip(indices, outputs):
            samples[i] = out
    return samples

"""PyTorch with reduced precision: torch.autocast around the network part
(backbone, neck and head.forward), its outputs cast back to float32 so that
MMPose's / MMDetection's decoding sees the dtype it always does.

f16 on a CUDA GPU is the use this is for; on a CPU, autocast runs bf16 (and
f16 where torch supports it) through the very same code, which is how the
tests exercise it on machines without a GPU."""
from __future__ import annotations

import torch

from runner.backends.export import head_of
from runner.errors import RunnerError

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}  # what backends.table lets pytorch run below f32


def _as_float32(value):
    if isinstance(value, torch.Tensor):
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_as_float32(v) for v in value)
    return value


class AutocastNetwork:
    """The model's own extract_feat + head.forward (taken before they are
    swapped out) under torch.autocast."""

    def __init__(self, model, precision: str):
        self.extract, self.head = model.extract_feat, head_of(model).forward
        self.device_type = next(model.parameters()).device.type
        self.dtype = DTYPES[precision]
        if not torch.amp.is_autocast_available(self.device_type):
            raise RunnerError(f"backend.precision={precision}: torch has no autocast on {self.device_type}: "
                              "use backend.precision=f32")

    def __call__(self, inputs: torch.Tensor):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return _as_float32(self.head(self.extract(inputs)))

"""The network part of an MMDetection / MMPose model, exported to ONNX once.

The loaded PyTorch model is exported by torch.onnx (no MMDeploy) from its
`_forward` (backbone, neck and head.forward: tensors in, tensors out). The
export is what ONNX Runtime and OpenVINO run: by the ONNX-native engine
(runner/native) for the families it knows, and otherwise inside the model
object, which stays MMPose's / MMDetection's own: only `extract_feat` (now
the whole network) and the head's `forward` (now a pass-through) are swapped
(swap_network), so the data preprocessor, flip test, decoding and any
post-network modules (RTMO's DCC) run exactly as with plain PyTorch.

Exports are named by checkpoint sha256 + config identity + export settings
(files.export_path), written atomically under a lock, with a JSON record
beside the .onnx (output structure, sha256, the model's description for the
native engine), never pickled, and checked before every use (files.verified)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runner import atomic
from runner.backends.files import OPSET, record
from runner.hashing import sha256_file


# -- output structure (nested tuples/lists of tensors) <-> flat list ------------
def flatten(value, out: list) -> object:
    if isinstance(value, torch.Tensor):
        out.append(value)
        return len(out) - 1
    if isinstance(value, (list, tuple)):
        return [flatten(v, out) for v in value]
    raise TypeError(f"cannot export an output of type {type(value).__name__}")


def unflatten(structure, flat: list):
    if isinstance(structure, int):
        return flat[structure]
    return tuple(unflatten(s, flat) for s in structure)


class _Network(torch.nn.Module):
    """model._forward with a flat tuple of outputs (what ONNX needs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.structure = None

    def forward(self, inputs):
        flat: list = []
        self.structure = flatten(self.model._forward(inputs), flat)
        return tuple(flat)


def export(model, path: Path, input_shape: tuple[int, ...], described: dict | None = None) -> None:
    """Export to `path` (atomically) and write its record beside it; `described`:
    what the native engine needs of the model ({model, config, described_by})."""
    neck = getattr(model, "neck", None)
    if hasattr(neck, "switch_to_deploy"):  # RTMO's encoder: positional encodings as constants
        neck.switch_to_deploy(model.test_cfg)
    network = _Network(model).eval()
    dummy = torch.zeros(input_shape, device=next(model.parameters()).device)
    with torch.no_grad():
        count = len(network(dummy))
    names = [f"out{i}" for i in range(count)]
    with atomic.atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(network, (dummy,), str(tmp), input_names=["input"], output_names=names,
                          dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                        **{n: {0: "batch"} for n in names}},
                          opset_version=OPSET, dynamo=False)
        atomic.write_json(path.with_suffix(".json"), {"structure": network.structure, "outputs": names,
                                                      "sha256": sha256_file(tmp), "model": None,
                                                      **(described or {})})


# -- running a network in place of the model's own --------------------------------
class _Computed:
    """What the swapped extract_feat hands to the head: the network's outputs."""

    def __init__(self, outputs):
        self.outputs = outputs


def head_of(model):
    """The head whose forward ends the network: MMPose's `head`, MMDetection's `bbox_head`."""
    return getattr(model, "head", None) or model.bbox_head


def swap_network(model, network):
    """Swap the network part of `model` (in place) for `network` (a callable:
    input batch -> the head's outputs, as model._forward returns them)."""
    head = head_of(model)
    model.extract_feat = lambda inputs: _Computed(network(inputs))
    head.forward = lambda feats, *args, **kwargs: feats.outputs
    return model


class TorchAdapter:
    """A numpy network (backends.network.Network) where the model's own
    extract_feat + head.forward were: tensors in, the export's output structure out."""

    def __init__(self, network, path: Path):
        self.network, self.structure = network, record(path)["structure"]

    def __call__(self, inputs: torch.Tensor):
        outputs = self.network(inputs.detach().cpu().numpy().astype(np.float32))
        return unflatten(self.structure, [torch.from_numpy(o).to(inputs.device) for o in outputs])

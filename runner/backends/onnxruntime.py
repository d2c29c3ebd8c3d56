"""ONNX Runtime for the network part of an MMDetection / MMPose model.

The loaded PyTorch model is exported by torch.onnx (no MMDeploy) from its
`_forward` (backbone, neck and head.forward: tensors in, tensors out). At run
time the model object stays MMPose's / MMDetection's own: only `extract_feat`
(now the whole ONNX graph) and the head's `forward` (now a pass-through) are
swapped, so the data preprocessor, flip test, decoding and any post-network
modules (RTMO's DCC) run exactly as with the PyTorch backend.

Exports are cached by checkpoint sha256 + config digest + export settings,
written atomically under a lock; the output structure (nested lists of
tensors) is saved as JSON beside the .onnx, never pickled."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from runner import atomic
from runner.hashing import digest
from runner.versions import versions

OPSET = 17


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


def export_settings(input_shape: tuple[int, ...]) -> dict:
    return {"opset": OPSET, "input": list(input_shape[1:]), "dynamic": ["batch", "height", "width"],
            "libs": versions("torch", "mmcv", "mmdet", "mmpose", "onnx")}


def export(model, path: Path, input_shape: tuple[int, ...]) -> None:
    """Export to `path` (atomically) and write its structure file beside it."""
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
        atomic.write_json(path.with_suffix(".json"), {"structure": network.structure, "outputs": names})


class OrtNetwork:
    """An exported network in an ONNX Runtime session."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.structure = json.loads(path.with_suffix(".json").read_text())["structure"]

    def __call__(self, inputs: torch.Tensor):
        outputs = self.session.run(None, {"input": inputs.detach().cpu().numpy().astype(np.float32)})
        flat = [torch.from_numpy(o).to(inputs.device) for o in outputs]
        return unflatten(self.structure, flat)


class _Computed:
    """What the swapped extract_feat hands to the head: the network's outputs."""

    def __init__(self, outputs):
        self.outputs = outputs


def use_onnxruntime(model, network: OrtNetwork):
    """Swap the network part of `model` (in place) for `network`."""
    head = getattr(model, "head", None) or model.bbox_head
    model.extract_feat = lambda inputs: _Computed(network(inputs))
    head.forward = lambda feats, *args, **kwargs: feats.outputs
    return model


def onnx_model(model, key: dict, folder: Path, input_shape: tuple[int, ...], threads: int):
    """`model` running its network in ONNX Runtime, exporting it first unless an
    export for the same checkpoint, config and settings is cached in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = export_settings(input_shape)
    path = folder / f"{key['name']}-{digest({**key, **settings})[:16]}.onnx"
    with atomic.locked(str(path) + ".lock", f"exporting {path.name}"):
        if not path.exists() or not path.with_suffix(".json").exists():
            export(model, path, input_shape)
    return use_onnxruntime(model, OrtNetwork(path, threads))

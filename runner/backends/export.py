"""The network part of an MMDetection / MMPose model, exported to ONNX once and
run by another backend (ONNX Runtime, OpenVINO) or under PyTorch autocast.

The loaded PyTorch model is exported by torch.onnx (no MMDeploy) from its
`_forward` (backbone, neck and head.forward: tensors in, tensors out). At run
time the model object stays MMPose's / MMDetection's own: only `extract_feat`
(now the whole network) and the head's `forward` (now a pass-through) are
swapped, so the data preprocessor, flip test, decoding and any post-network
modules (RTMO's DCC) run exactly as with plain PyTorch.

Exports are cached by checkpoint sha256 + config digest + export settings,
written atomically under a lock; the output structure (nested lists of
tensors) and the files' sha256 are saved as a JSON record beside the .onnx,
never pickled. A file is checked against its record before every use and made
again when it is damaged or altered; where backend.dir cannot be written, it
is made in a scratch folder for this process."""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from runner import atomic
from runner.hashing import digest, sha256_file
from runner.versions import versions

log = logging.getLogger(__name__)
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
    """Export to `path` (atomically) and write its record beside it."""
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
                                                      "sha256": sha256_file(tmp)})


# -- records: what a derived file must be ----------------------------------------
def record(path: Path) -> dict:
    """The JSON record beside `path`: its output structure and sha256 (one file:
    "sha256"; several, as OpenVINO IR's .xml + .bin: "files" by name)."""
    return json.loads(path.with_suffix(".json").read_text())


def recorded_files(path: Path, rec: dict) -> dict[Path, str]:
    if "files" in rec:
        return {path.with_name(name): sha for name, sha in rec["files"].items()}
    return {path: rec["sha256"]}


def damage(path: Path) -> str | None:
    """Why the file at `path` cannot be used (None: it is whole and unaltered)."""
    if not path.exists() and not path.with_suffix(".json").exists():
        return "missing"
    try:
        for file, recorded in recorded_files(path, record(path)).items():
            found = sha256_file(file)
            if found != recorded:
                return f"{file.name}: sha256 {found[:12]} is not the recorded {recorded[:12]}"
    except (OSError, ValueError, KeyError) as err:
        return f"unreadable ({type(err).__name__})"
    return None


def exported(model, key: dict, folder: Path, input_shape: tuple[int, ...]) -> Path:
    """The path of a whole export of `model` for the same checkpoint, config and
    settings, exporting it first unless one is in `folder`."""
    name = f"{key['name']}-{digest({**key, **export_settings(input_shape)})[:16]}.onnx"
    return verified(folder / name, "exporting", lambda path: export(model, path, input_shape))


def verified(path: Path, doing: str, make) -> Path:
    """`path`, whole and unaltered; made by `make(path)` under a lock first unless it
    is (in a scratch folder for this process where its folder cannot be written)."""
    if damage(path) is not None:
        if not atomic.writable(path.parent):
            path = scratch_folder(path.parent) / path.name
        with atomic.locked(str(path) + ".lock", f"{doing} {path.name}"):
            why = damage(path)
            if why is not None:
                if why != "missing":
                    log.warning("%s is %s: %s it again", path, why, doing)
                make(path)
    with contextlib.suppress(OSError):  # last use, for `cache gc` (read-only: not recorded)
        os.utime(path)
    return path


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


_scratch: dict[Path, Path] = {}


def scratch_folder(folder: Path) -> Path:
    """A folder for this process's exports when `folder` cannot be written."""
    if folder not in _scratch:
        _scratch[folder] = Path(tempfile.mkdtemp(prefix="pose-runner-onnx-"))
        atexit.register(shutil.rmtree, _scratch[folder], True)
        log.warning("backend.dir %s cannot be written: exporting into %s for this run only (set backend.dir "
                    "to a writable folder to keep exports)", folder, _scratch[folder])
    return _scratch[folder]

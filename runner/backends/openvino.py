"""OpenVINO for the network part of an MMDetection / MMPose model, on the CPU.

It runs the runner's own verified ONNX export (runner/backends/export.py) or a
user's ONNX model file, through backends/network.py, as ONNX Runtime does.
Precision is OpenVINO's compile hint:

- f32: float32 everywhere (parity with PyTorch within float32 reordering);
- bf16 / f16: what the CPU supports natively (OPTIMIZATION_CAPABILITIES);
  asking for one it lacks is an error, never a silent fallback;
- int8: post-training quantization by NNCF on a calibration set the user names;
  the quantized network is saved as OpenVINO IR (.xml/.bin) beside the exports,
  keyed by the export, the calibration images' content and NNCF's version, and
  verified by sha256 before every use, as exports are.

Compiled models are not cached: with the exports' dynamic shapes, compiling
takes 0.1-0.4 s, less than importing OpenVINO's exported blob (0.3-0.6 s,
measured for RTMPose-m); the per-shape kernels are made at the first inference
of each shape and kept for the process."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import numpy as np

from runner.backends.files import install, record, verified
from runner.errors import RunnerError
from runner.hashing import digest, sha256_file

log = logging.getLogger(__name__)
HINTS = {"f32": "f32", "bf16": "bf16", "f16": "f16", "int8": "f32"}  # int8: what is not quantized stays f32
# NNCF's presets, which a family names as its `int8_preset`: "performance" (NNCF's
# default) quantizes activations symmetrically, right for ReLU networks
# (MediaPipe's); "mixed" quantizes them asymmetrically, as SiLU/Swish networks
# (RTMDet, YOLOX, RTMPose) need: their activations barely go negative, and the
# symmetric grid spent half its 256 levels there (the trained RTMDet-nano found
# no person at all; BENCHMARKS.md, "Real poses").
PRESETS = ("performance", "mixed")


@contextlib.contextmanager
def telemetry_off():
    """OpenVINO's and NNCF's usage telemetry (openvino_telemetry) writes a client id
    into ~/intel when they are imported and sends events unless told not to; the
    one switch it reads that needs no file in the home folder is CI=true (NNCF
    also reads NNCF_CI). Set around the imports only."""
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    os.environ.setdefault("NNCF_CI", "1")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved


@functools.lru_cache(maxsize=1)
def core():
    with telemetry_off():
        import openvino as ov
    return ov.Core()


def capabilities() -> list[str]:
    return list(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


# -- int8 ---------------------------------------------------------------------
def quantized(onnx: Path, calibration: "Calibration", preset: str, folder: Path | None = None) -> Path:
    """The int8 IR of `onnx` (the runner's export, or a user's network file) for
    `calibration` with NNCF's `preset`, quantized once into `folder` (default:
    beside it) and verified before use."""
    from runner.versions import versions
    key = {"export": source(onnx)[0], "images": calibration.digest, "libs": versions("nncf", "openvino"),
           "preset": preset}
    path = (folder or onnx.parent) / f"{onnx.stem}.int8-{digest(key)[:16]}.xml"
    return verified(path, "quantizing", lambda made: quantize(onnx, made, calibration, preset))


def source(network: Path) -> tuple[str, list | None]:
    """(sha256, output structure) of a network file: the runner's export's record
    says both; a user's file (an ONNX or TFLite model) is its own content."""
    try:
        rec = record(network)
        return rec["sha256"], rec["structure"]
    except (OSError, ValueError, KeyError):
        return sha256_file(network), None


def quantize(onnx: Path, path: Path, calibration: "Calibration", preset: str) -> None:
    """NNCF's post-training quantization of `onnx`, saved as IR at `path` (+ .bin)
    with its record (files.install)."""
    with telemetry_off():
        import nncf
    import openvino as ov
    samples = calibration.inputs()
    log.info("quantizing %s to int8 on %d calibration inputs", onnx.name, len(samples))
    result = nncf.quantize(core().read_model(str(onnx)), nncf.Dataset(samples), subset_size=len(samples),
                           preset=nncf.QuantizationPreset(preset))
    install(path, lambda made: ov.save_model(result, str(made), compress_to_fp16=False),
            {"structure": source(onnx)[1]})


def calibration_images(folder) -> list[Path]:
    """The images of backend.calibration, or a clear error."""
    from runner.inputs import IMAGE_EXTS
    path = Path(str(folder)).expanduser() if folder else None
    if path is None or not path.is_dir():
        raise RunnerError(f"backend.calibration={folder} is not a folder: backend.precision=int8 needs "
                          "backend.calibration=DIR, a folder of images like the ones you will run")
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise RunnerError(f"backend.calibration={folder} has no images: put a few dozen images like the ones "
                          "you will run in it")
    return images


def calibration_digest(folder) -> str:
    """The calibration set's content (what an int8 network and its results depend on)."""
    return _content(calibration_images(folder))[0]


def _content(images: list[Path]) -> tuple[str, list[Path]]:
    """(the set's digest, its images in content order). NNCF's result depends on
    the order it sees the images in (measured: BlazePose's landmarks move by up
    to 1.3 px when it is reversed), so the images go in the order of their
    sha256, which the digest names: renaming files changes nothing."""
    hashes = {p: sha256_file(p) for p in images}
    return digest({"in content order": sorted(hashes.values())}), sorted(hashes, key=hashes.get)


class Calibration:
    """backend.calibration: a folder of images, and `prepare` (images -> the
    network inputs an engine makes of them: its own pre-processing; per-box
    families see each image whole as the box)."""

    def __init__(self, folder: str, prepare):
        self.digest, self.paths = _content(calibration_images(folder))
        self.prepare = prepare

    def inputs(self) -> list[np.ndarray]:
        import cv2
        images = [cv2.imread(str(p)) for p in self.paths]
        unreadable = [p.name for p, i in zip(self.paths, images) if i is None]
        if unreadable:
            raise RunnerError(f"backend.calibration: cannot read {', '.join(unreadable)}: remove them")
        return self.prepare(images)

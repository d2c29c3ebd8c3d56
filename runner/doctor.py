"""`python -m runner.doctor`: is this environment able to run pose-runner?

MMPose's "Verify the installation", made useful: every check prints what it
found, and every failed check prints the specific fix. Exit status 0 only when
everything needed works (the checkpoint host being unreachable is a warning:
checkpoints can come from the cache, a mirror or a path).
"""
from __future__ import annotations

import os
import platform
import socket
import sys
import tempfile
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SETUP = "run `make setup` (scripts/setup.sh) in the project folder"


@dataclass
class Result:
    status: str      # "ok", "warn" or "FAIL"
    name: str
    found: str
    fix: str = ""


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()


def check_python() -> Result:
    ok = sys.version_info[:2] == (3, 11)
    return Result("ok" if ok else "FAIL", "Python", platform.python_version(),
                  "" if ok else "use Python 3.11 (the pinned torch and mmcv wheels are cp311): "
                  "PYTHON=python3.11 make setup")


def check_torch() -> Result:
    import torch
    if torch.cuda.is_available():
        device = f"CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}"
    else:
        device = "no CUDA device: runs on the CPU"
    return Result("ok", "torch", f"{torch.__version__} ({device}, {torch.get_num_threads()} threads)")


def check_torchvision() -> Result:
    import torch
    import torchvision
    from torchvision.ops import nms
    nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([1.0]), 0.5)
    return Result("ok", "torchvision", f"{torchvision.__version__} (ops run)")


def check_mmcv() -> Result:
    import mmcv
    return Result("ok", "mmcv", mmcv.__version__)


def check_mmcv_ops() -> Result:
    import torch
    from mmcv.ops import nms
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    kept, _ = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    if len(kept) != 2:
        return Result("FAIL", "mmcv ops", f"nms kept {len(kept)} of 3 boxes, expected 2",
                      f"mmcv's compiled ops are broken: {SETUP} to rebuild mmcv 2.1.0")
    return Result("ok", "mmcv ops", "compiled ops load; mmcv.ops.nms runs")


def check_mmengine() -> Result:
    import mmengine
    return Result("ok", "mmengine", mmengine.__version__)


def check_mmdet() -> Result:
    # Imported directly: MMPose hides this import's real error behind
    # "MMDetection is required", so show the real one here.
    import mmdet
    import mmdet.apis  # noqa: F401
    return Result("ok", "mmdet", mmdet.__version__)


def check_mmpose() -> Result:
    import mmpose
    import mmpose.apis  # noqa: F401
    return Result("ok", "mmpose", mmpose.__version__)


def check_xtcocotools() -> Result:
    from xtcocotools.coco import COCO  # noqa: F401
    from xtcocotools.cocoeval import COCOeval  # noqa: F401
    from runner.versions import version
    return Result("ok", "xtcocotools", version("xtcocotools"))


def check_numpy() -> Result:
    import numpy
    return Result("ok", "numpy", numpy.__version__)


def check_opencv() -> Result:
    import cv2
    return Result("ok", "OpenCV", cv2.__version__)


def check_backends() -> Result:
    """The backends' versions, and the precisions this CPU runs natively."""
    import onnxruntime
    import openvino
    from omegaconf import OmegaConf
    from runner.backends.table import choose_backend, machine_precisions, resolve_device
    device = resolve_device(OmegaConf.create({"type": "auto"}))
    auto = choose_backend(OmegaConf.create({"name": "auto", "precision": "f32"}), device)
    return Result("ok", "backends", f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__.split('-')[0]}; "
                  f"backend.precision this CPU runs: {', '.join(machine_precisions('openvino'))}; "
                  f"backend=auto picks {auto.name} ({auto.why.removeprefix('auto: ')})")


def check_safe_load() -> Result:
    """A checkpoint with numpy arrays in its meta loads with weights_only on."""
    import numpy as np
    import torch
    from runner.checkpoints.safe_load import load_checkpoint_file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.pth"
        torch.save({"meta": {"sigmas": np.ones(3, np.float32)}, "state_dict": {}}, path,
                   _use_new_zipfile_serialization=False)
        load_checkpoint_file(path)
    return Result("ok", "checkpoint loading", f"weights_only=True with the numpy allow-list "
                  f"(torch {torch.__version__})")


def check_cache_dir() -> Result:
    from runner.config import compose_config
    cfg = compose_config([])
    folder = Path(str(cfg.download.dir)).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        return Result("FAIL", "checkpoint cache", f"{folder}: {err.strerror}",
                      "make it writable, or point POSE_RUNNER_CACHE at a writable folder")
    return Result("ok", "checkpoint cache", f"{folder} (writable)")


def check_object_storage() -> Result:
    """cache.dir=s3://...: the bucket is there and takes these credentials."""
    from runner import objects
    from runner.config import compose_config
    cache = str(compose_config([]).cache.dir)
    if not objects.is_url(cache):
        return Result("ok", "object storage", "cache.dir is a folder: none used")
    try:
        objects.Bucket(objects.Location.of(cache).bucket).check()
    except objects.StorageError as err:
        return Result("FAIL", "object storage", str(err), "see README, \"Object storage\"")
    return Result("ok", "object storage", f"{cache} at {objects.endpoint()}: reachable, credentials accepted")


def check_checkpoint_host(host: str = "download.openmmlab.com", timeout: float = 3.0) -> Result:
    def connect():
        with socket.create_connection((host, 443), timeout=timeout):
            pass

    # A thread bounds the whole check: name lookups ignore the socket timeout.
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(connect).result(timeout=timeout)
    except (OSError, FutureTimeout) as err:
        why = getattr(err, "strerror", None) or str(err) or f"no answer in {timeout:.0f} s"
        return Result("warn", "checkpoint host", f"{host} not reachable ({why})",
                      "offline: put the official .pth files in a folder and pass "
                      "download.mirror=FOLDER, or pass <step>.model.checkpoint=PATH")
    finally:
        pool.shutdown(wait=False)
    return Result("ok", "checkpoint host", f"{host} reachable")


# What a failure of each check usually means, by the text of its error.
KNOWN_FIXES: list[tuple[str, str]] = [
    ("mmcv._ext", "mmcv was installed without compiled ops (a plain `pip install mmcv` of the "
                  "source without MMCV_WITH_OPS=1, or mmcv-lite): " + SETUP),
    ("undefined symbol", "mmcv's compiled ops were built for another torch: delete the mmcv "
                         "wheel in ~/.cache/pose-runner/wheels and " + SETUP),
    ("MMCV==", "mmdet 3.3.0 needs mmcv >= 2.0.0rc4, < 2.2.0: " + SETUP + " (it pins mmcv 2.1.0)"),
    ("numpy.dtype size changed", "xtcocotools was compiled against numpy 1: " + SETUP +
                                 " (it builds xtcocotools from source against this numpy)"),
    ("chumpy", "mmpose lists chumpy, which does not build and is never imported: install mmpose "
               "with --no-deps, as " + SETUP.split("`")[1] + " does"),
    ("C++20", "torch 2.14's headers need C++20: mmcv's setup.py must say -std=c++20; " + SETUP),
    ("Weights only load failed", "torch >= 2.6 loads with weights_only=True; load checkpoints "
                                 "through runner.checkpoints.safe_load (allow-list), not weights_only=False"),
    ("pkg_resources", "mmengine needs pkg_resources at run time (setuptools < 81): " + SETUP),
    ("No module named", SETUP),
]

CHECKS: list[Callable[[], Result]] = [
    check_python, check_torch, check_torchvision, check_mmcv, check_mmcv_ops, check_mmengine,
    check_mmdet, check_mmpose, check_xtcocotools, check_numpy, check_opencv, check_backends, check_safe_load,
    check_cache_dir, check_object_storage, check_checkpoint_host,
]


def run_check(check: Callable[[], Result]) -> Result:
    name = check.__name__.removeprefix("check_").replace("_", " ")
    try:
        return check()
    except Exception as err:
        text = _error_text(err) + " " + traceback.format_exc()
        fix = next((f for pattern, f in KNOWN_FIXES if pattern in text), SETUP)
        return Result("FAIL", name, _error_text(err), fix)


def main() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import warnings
    warnings.simplefilter("ignore")
    print(f"pose-runner doctor ({sys.executable})")
    results = [run_check(c) for c in CHECKS]
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"  {r.status:4s}  {r.name:{width}s}  {r.found}")
        if r.fix:
            print(f"        {'':{width}s}  fix: {r.fix}")
    failed = [r for r in results if r.status == "FAIL"]
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

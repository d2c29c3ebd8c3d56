"""Versions of the libraries whose upgrades can change results."""
from __future__ import annotations

import functools
from importlib import metadata

# distribution names (what pip calls them); cv2 is opencv-python
_DISTRIBUTIONS = {"cv2": "opencv-python"}


@functools.lru_cache(maxsize=None)
def version(name: str) -> str:
    try:
        return metadata.version(_DISTRIBUTIONS.get(name, name))
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(*names: str) -> dict[str, str]:
    return {n: version(n) for n in names}


STACK = ("pose-runner", "torch", "torchvision", "mmcv", "mmengine", "mmdet", "mmpose",
         "numpy", "cv2", "onnxruntime", "hydra-core")

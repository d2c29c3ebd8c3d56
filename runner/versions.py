"""Versions of the libraries whose upgrades can change results."""
from __future__ import annotations

import functools
import os
import re
import sys
from importlib import metadata

# distribution names (what pip calls them); cv2 is opencv-python
_DISTRIBUTIONS = {"cv2": "opencv-python"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@functools.lru_cache(maxsize=1)
def _dist_infos() -> dict[str, str]:
    """normalized name -> version, read off the .dist-info folders' names on
    sys.path (`numpy-2.3.5.dist-info`): one listing per folder, where asking
    importlib.metadata name by name searches them all each time."""
    found: dict[str, str] = {}
    for folder in sys.path:
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info") and "-" in entry:
                name, _, number = entry[:-len(".dist-info")].rpartition("-")
                found.setdefault(_normalized(name), number)
    return found


@functools.lru_cache(maxsize=None)
def version(name: str) -> str:
    distribution = _DISTRIBUTIONS.get(name, name)
    listed = _dist_infos().get(_normalized(distribution))
    if listed is not None:
        return listed
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(*names: str) -> dict[str, str]:
    return {n: version(n) for n in names}


STACK = ("pose-runner", "torch", "torchvision", "mmcv", "mmengine", "mmdet", "mmpose",
         "numpy", "cv2", "onnxruntime", "hydra-core")

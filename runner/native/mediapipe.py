"""What MediaPipe's graphs share, in numpy and OpenCV (no MediaPipe): the
square region of the image a network looks at (MediaPipe's NormalizedRect, in
pixels: centre, side, rotation), the crop ImageToTensorCalculator makes of it
(RGB, [0, 1], NHWC, one image at a time) and the map of crop points back to
the image (LandmarkProjectionCalculator, DetectionLetterboxRemovalCalculator).
The crop and its inverse are one affine matrix, so they cannot disagree.

Conventions, as MediaPipe's: a rotation is in radians, positive clockwise on
the screen (image y points down); crop pixel (0, 0) is the region's corner
(cv2.boxPoints -> the output's corners, as ImageToTensorConverter does)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from runner.errors import RunnerError
from runner.models.topdown import Topdown
from runner.native import COMPUTES_WITH

BORDERS = {"zero": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


@dataclass(frozen=True)
class Region:
    """A square region of an image, in pixels."""
    center: tuple[float, float]
    side: float
    rotation: float = 0.0  # radians

    def to_image(self, size: int) -> np.ndarray:
        """The 2x3 affine map from the pixels of its `size` x `size` crop to the image's."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        scale = self.side / size
        (x, y), half = self.center, self.side / 2
        return np.array([[scale * c, -scale * s, x - half * c + half * s],
                         [scale * s, scale * c, y - half * s - half * c]], np.float64)

    def bounds(self) -> np.ndarray:
        """Its axis-aligned bounding box (x1, y1, x2, y2)."""
        half = self.side / 2 * (abs(math.cos(self.rotation)) + abs(math.sin(self.rotation)))
        x, y = self.center
        return np.array([x - half, y - half, x + half, y + half], np.float32)

    @classmethod
    def of_bounds(cls, box: np.ndarray, rotation: float) -> "Region":
        """The square region whose bounds() is `box` at `rotation` (what a record carries)."""
        box = np.asarray(box, np.float64)
        spread = abs(math.cos(rotation)) + abs(math.sin(rotation))
        return cls(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), float(box[2] - box[0]) / spread, float(rotation))

    @classmethod
    def upright(cls, box: np.ndarray, padding: float) -> "Region":
        """The square around a plain box: its centre, its longer side grown `padding` times."""
        box = np.asarray(box, np.float64)
        return cls(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), float(max(box[2] - box[0], box[3] - box[1]))
                   * padding)


def normalize_radians(angle: float) -> float:
    """An angle wrapped into [-pi, pi), as MediaPipe's NormalizeRadians."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def crop(image: np.ndarray, region: Region, size: int, border: str) -> np.ndarray:
    """The (size, size, 3) float32 RGB [0, 1] crop of a BGR uint8 image's region:
    bilinear on the uint8 pixels, then scaled, as ImageToTensorCalculator does
    on the CPU (`border`: "zero" or "replicate", its border modes)."""
    warped = cv2.warpAffine(image, region.to_image(size), (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=BORDERS[border], borderValue=(0, 0, 0))
    return cv2.cvtColor(warped, cv2.COLOR_BGR2RGB).astype(np.float32) * np.float32(1 / 255)


def to_image(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Crop pixels (..., 2) -> image pixels, through Region.to_image's matrix."""
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def rotate(vectors: np.ndarray, rotation: float) -> np.ndarray:
    """(..., 3) vectors turned about z by `rotation` (world landmarks, as
    WorldLandmarkProjectionCalculator turns them with their region)."""
    c, s = math.cos(rotation), math.sin(rotation)
    out = vectors.astype(np.float32).copy()
    out[..., 0] = c * vectors[..., 0] - s * vectors[..., 1]
    out[..., 1] = s * vectors[..., 0] + c * vectors[..., 1]
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(x, np.float32)))).astype(np.float32)


def outputs(network, wanted: dict[str, tuple], what: str) -> dict[str, int]:
    """Where each wanted output ({name: shape}) is among the network's, found by
    name, or one line naming the file and what it should have been."""
    found = {o.name: (i, tuple(o.shape)) for i, o in enumerate(network.outputs)}
    missing = [n for n, shape in wanted.items() if n not in found or found[n][1] != shape]
    inputs = network.inputs[0].shape if network.inputs else ()
    if missing:
        shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in network.outputs)
        raise RunnerError(f"{network.path} has outputs {shapes} (input {list(inputs)}): it is not {what}, whose "
                          f"outputs are {', '.join(f'{n} {list(s)}' for n, s in wanted.items())}")
    return {n: found[n][0] for n in wanted}


def square_input(network, what: str) -> int:
    """The side of a network's fixed NHWC batch-1 square RGB input, or one line."""
    shape = tuple(network.inputs[0].shape) if network.inputs else ()
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or shape[1] != shape[2] or not isinstance(shape[1], int):
        raise RunnerError(f"{network.path} takes {list(shape)}: {what} takes one square RGB image, [1, S, S, 3]")
    return int(shape[1])


@dataclass(frozen=True)
class CropModel:
    """What a MediaPipe landmark network needs besides its file."""
    size: int          # the square input's side
    padding: float     # a plain box's square grown this much
    border: str        # pixels outside the image: "replicate" (MediaPipe's default) or "zero"


class LandmarkModel(Topdown):
    """What MediaPipe's landmark networks share as pose models (one unit per
    box, batch 1, NHWC): the network's outputs found by name, the entry's
    `padding` and `border` in every key, no flip test. A subclass says what
    the network is (`what`, `wanted` outputs), its keypoints and `predict`."""
    code_version = 1
    computes_with = COMPUTES_WITH
    has_flip_test = False  # MediaPipe runs one pass (refused at the config check)
    int8_preset = "performance"  # ReLU6 networks (backends/openvino.PRESETS); "mixed" made BlazePose's worse
    what = ""
    wanted: dict[str, tuple] = {}
    keypoints, num_keypoints = "", 0

    def __init__(self, network, model: CropModel):
        self.network, self.model = network, model
        self.index = outputs(network, self.wanted, self.what)

    @classmethod
    def describe(cls, entry, network) -> CropModel:
        return CropModel(square_input(network, cls.what), float(entry.padding), str(entry.border))

    @classmethod
    def check(cls, network, entry, own=None) -> None:
        outputs(network, cls.wanted, cls.what)
        square_input(network, cls.what)

    @classmethod
    def build(cls, network, model: CropModel, entry, flip_test: bool = False, structure=None):
        if flip_test:
            raise RunnerError(f"pose/model={entry.name} has no flip test (MediaPipe runs one pass): pass "
                              "pose.flip_test=null or false")
        return cls(network, model)

    def facts(self) -> dict:
        return {"num_keypoints": self.num_keypoints, "keypoints": self.keypoints,
                "input_size": [self.model.size, self.model.size]}

    @staticmethod
    def network_inputs(model: CropModel, images: list[np.ndarray]) -> list[np.ndarray]:
        """What the network sees of each image taken whole as its box (int8 calibration)."""
        return [crop(i, Region.upright(np.array([0, 0, i.shape[1], i.shape[0]]), model.padding), model.size,
                     model.border)[None] for i in images]

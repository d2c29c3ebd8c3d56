"""MediaPipe's palm detector (palm_detection_full) as a detector of hand
regions, as MediaPipe's hand pipeline runs it (palm_detection_cpu.pbtxt,
palm_detection_detection_to_roi.pbtxt):

- the image letterboxed into the network's square input, centred, zero border
  (ImageToTensorCalculator, keep_aspect_ratio);
- SSD anchors (SsdAnchorsCalculator: 4 layers, strides 8, 16, 16, 16, one
  aspect ratio plus the interpolated one, fixed anchor size, offset 0.5);
- boxes and 7 palm keypoints decoded from the anchors (TensorsToDetections:
  x, y, w, h order, scaled by the input size), scores through a sigmoid of
  the logits clipped to +-100;
- weighted non-maximum suppression (NonMaxSuppressionCalculator, WEIGHTED,
  IoU): a kept palm is the score-weighted mean of the palms it suppresses;
- the hand region from each palm (DetectionsToRects, RectTransformation):
  rotated so that the wrist (keypoint 0) -> middle finger MCP (keypoint 2)
  points up, shifted half the palm's height towards the fingers, squared on
  its long side and grown 2.6 times.

What is cached per image is every decoded palm scoring at least CACHED_SCORE,
before any threshold of ours: detect.bbox_thr (MediaPipe's
min_detection_confidence) and detect.nms_thr (its min_suppression_threshold)
are applied when a result is attached, so changing them runs no network. A
record gets the regions' axis-aligned bounds as its boxes (what any hand pose
model takes) and their rotations as `box_angles` (what the hand landmark
model takes)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runner.errors import RunnerError
from runner.native import COMPUTES_WITH
from runner.native.mediapipe import Region, crop, normalize_radians, outputs, sigmoid, square_input, to_image

# Palms scoring below this are not kept in the cache (a detect.bbox_thr below it keeps none of them).
CACHED_SCORE = 0.05
SCORE_CLIP = 100.0          # TensorsToDetectionsCalculatorOptions.score_clipping_thresh
STRIDES = (8, 16, 16, 16)   # SsdAnchorsCalculatorOptions of palm_detection_cpu.pbtxt
WRIST, MIDDLE_MCP = 0, 2    # the palm keypoints the hand region's rotation is taken from
REGION_SCALE, REGION_SHIFT_Y = 2.6, -0.5  # RectTransformationCalculatorOptions: the palm -> the hand


def anchors(size: int, strides=STRIDES) -> np.ndarray:
    """(N, 2) anchor centres in input pixels, in the network's order: per run of
    layers with one stride, its grid row by row, each cell's anchors together
    (two per layer: aspect ratio 1 and the interpolated scale)."""
    centres, layer = [], 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        per_cell = 2 * (same - layer)
        cells = math.ceil(size / strides[layer])
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = (np.stack([xs.ravel(), ys.ravel()], axis=-1) + 0.5) / cells * size
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer = same
    return np.concatenate(centres).astype(np.float32)


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of `others` (0 where they do not overlap)."""
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = w * h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) \
        - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_thr: float):
    """MediaPipe's WeightedNonMaxSuppression: best first, each kept palm the
    score-weighted mean (box corners and keypoints) of every remaining palm
    that overlaps it by more than `iou_thr`, itself included, with its own score.
    Returns (boxes, scores, keypoints) of the kept palms, best first."""
    order = np.argsort(-scores, kind="stable")
    kept = ([], [], [])
    while len(order):
        overlap = iou(boxes[order[0]], boxes[order])
        group, rest = order[overlap > iou_thr], order[overlap <= iou_thr]
        weights = scores[group][:, None]
        if len(group):
            kept[0].append((boxes[group] * weights).sum(0) / weights.sum())
            kept[2].append((keypoints[group] * weights[:, :, None]).sum(0) / weights.sum())
        else:  # an empty box overlaps nothing, not even itself: kept as it is
            kept[0].append(boxes[order[0]])
            kept[2].append(keypoints[order[0]])
        kept[1].append(scores[order[0]])
        if len(rest) == len(order):
            break
        order = rest
    return (np.array(kept[0], np.float32).reshape(-1, 4), np.array(kept[1], np.float32),
            np.array(kept[2], np.float32).reshape(-1, keypoints.shape[1], 2))


def hand_region(box: np.ndarray, keypoints: np.ndarray) -> Region:
    """The hand region of a palm (box xyxy and keypoints (7, 2), image pixels):
    DetectionsToRectsCalculator's rotation (wrist -> middle finger MCP to 90
    degrees), then RectTransformationCalculator's shift, square and scale."""
    (x0, y0), (x1, y1) = keypoints[WRIST], keypoints[MIDDLE_MCP]
    rotation = normalize_radians(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))
    width, height = float(box[2] - box[0]), float(box[3] - box[1])
    cx = (box[0] + box[2]) / 2 - height * REGION_SHIFT_Y * math.sin(rotation)
    cy = (box[1] + box[3]) / 2 + height * REGION_SHIFT_Y * math.cos(rotation)
    return Region((float(cx), float(cy)), max(width, height) * REGION_SCALE, rotation)


@dataclass(frozen=True)
class PalmModel:
    size: int  # the square input's side


class NativePalmDetector:
    """Palms -> hand regions; one unit per image."""
    unit = "image"
    makes_boxes = True
    code_version = 1
    computes_with = COMPUTES_WITH
    int8_preset = "performance"  # a ReLU network (backends/openvino.PRESETS)
    wanted = {"Identity": (1, 2016, 18), "Identity_1": (1, 2016, 1)}  # boxes + keypoints, score logits

    def __init__(self, network, model: PalmModel):
        self.network, self.model = network, model
        self.index = outputs(network, self.wanted, "MediaPipe's palm detector")
        self.anchors = anchors(model.size)

    @staticmethod
    def describe(entry, network) -> PalmModel:
        return PalmModel(square_input(network, "MediaPipe's palm detector"))

    @staticmethod
    def check_config(cfg) -> None:
        """Before any image is read: a threshold below what the cache keeps would keep nothing."""
        thr = float(cfg.detect.bbox_thr)
        if thr < CACHED_SCORE:
            raise RunnerError(f"detect.bbox_thr={thr:g}: palms scoring below {CACHED_SCORE} are not kept; "
                              f"pass detect.bbox_thr={CACHED_SCORE} or more (MediaPipe's default is 0.5)")

    @classmethod
    def check(cls, network, entry, own=None) -> None:
        outputs(network, cls.wanted, "MediaPipe's palm detector")
        square_input(network, "MediaPipe's palm detector")

    @classmethod
    def build(cls, network, model: PalmModel, entry, flip_test: bool = False, structure=None):
        return cls(network, model)

    def facts(self) -> dict:
        return {"input_size": [self.model.size, self.model.size]}

    @staticmethod
    def region(image: np.ndarray) -> Region:
        """The whole image, letterboxed into a square (centred: MediaPipe pads both sides)."""
        h, w = image.shape[:2]
        return Region((w / 2, h / 2), float(max(w, h)))

    @staticmethod
    def network_inputs(model: PalmModel, images: list[np.ndarray]) -> list[np.ndarray]:
        """What the network sees of each image (int8 calibration)."""
        return [crop(i, NativePalmDetector.region(i), model.size, "zero")[None] for i in images]

    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image, every decoded palm scoring at least CACHED_SCORE: bboxes
        (N, 4) xyxy, scores (N,), keypoints (N, 7, 2), in image pixels, best first."""
        return [self._palms(image) for image in images]

    def _palms(self, image: np.ndarray) -> dict[str, np.ndarray]:
        region = self.region(image)
        found = self.network(crop(image, region, self.model.size, "zero")[None])
        raw = found[self.index["Identity"]][0]
        scores = sigmoid(np.clip(found[self.index["Identity_1"]][0, :, 0], -SCORE_CLIP, SCORE_CLIP))
        keep = np.flatnonzero(scores >= CACHED_SCORE)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        centre, raw = self.anchors[keep], raw[keep]
        middle, size = centre + raw[:, 0:2], raw[:, 2:4]
        boxes = np.concatenate([middle - size / 2, middle + size / 2], axis=1)
        points = centre[:, None, :] + raw[:, 4:].reshape(-1, 7, 2)
        positive = (size >= 0).all(axis=1)  # TensorsToDetections drops boxes of negative (or NaN) size
        matrix = region.to_image(self.model.size)
        return {"bboxes": to_image(boxes[positive].reshape(-1, 2), matrix).reshape(-1, 4),
                "scores": scores[keep][positive].astype(np.float32),
                "keypoints": to_image(points[positive], matrix).reshape(-1, 7, 2)}

    @staticmethod
    def attach(record, slot, raw, cfg) -> None:
        """Palms above detect.bbox_thr, weighted NMS at detect.nms_thr, and
        their hand regions: the record's boxes (bounds), scores and angles."""
        keep = raw["scores"] >= float(cfg.detect.bbox_thr)
        boxes, scores, keypoints = weighted_nms(raw["bboxes"][keep], raw["scores"][keep], raw["keypoints"][keep],
                                                float(cfg.detect.nms_thr))
        regions = [hand_region(b, k) for b, k in zip(boxes, keypoints)]
        record.boxes = np.array([r.bounds() for r in regions], np.float32).reshape(-1, 4)
        record.box_scores = scores
        record.box_angles = np.array([r.rotation for r in regions], np.float32)

"""Box geometry shared by evaluation and tracking (xyxy boxes)."""
from __future__ import annotations

import numpy as np

EXPANSION = 1.25  # rtmlib's pose_to_bbox: the keypoints' extent grown 1.25x about its centre


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (M, 4) with every box of `b` (N, 4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def from_keypoints(keypoints: np.ndarray, scores: np.ndarray, kpt_thr: float) -> np.ndarray | None:
    """The box a pose occupies: its confident keypoints' extent, grown by
    EXPANSION about the centre (None when fewer than 2 keypoints are confident)."""
    confident = keypoints[scores >= kpt_thr]
    return around(confident) if len(confident) >= 2 else None


def around(points: np.ndarray) -> np.ndarray:
    """The extent of `points` (N, 2), grown by EXPANSION about its centre (x1, y1, x2, y2)."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, (high - low) / 2 * EXPANSION
    return np.concatenate([centre - half, centre + half]).astype(np.float32)

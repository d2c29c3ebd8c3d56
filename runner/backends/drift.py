"""How far a reduced-precision run drifts from float32 on the same checkpoints,
images and boxes: the numbers BENCHMARKS.md publishes per precision and the
bounds tests/test_backends.py holds every precision to.

Pose drift compares instances one to one (runs given the same boxes, e.g.
detect/model=from_file); detector drift matches each float32 box to the
other run's box of highest IoU (boxes near bbox_thr may appear in one run
only: they are counted, not matched)."""
from __future__ import annotations

import numpy as np

# What each precision may drift from float32. Scores move by the precision's
# rounding (bf16 keeps 8 significant bits, f16 11; int8 has 256 levels per
# tensor), so their 95th percentile is bounded at about 5x the measured value.
# Keypoints are argmax positions: a position either stays (the same bin, well
# under 1 px) or jumps to another bin when the reduced precision flips a
# near-tie. The fabricated test checkpoints are untrained, so their SimCC
# maxima are nearly flat and ties are common: the worst case. The bounds are
# on the share of keypoints that stay within 1 px and on the median distance;
# maxima are published, not bounded. Boxes: an untrained detector's output is
# chaotic under small perturbations (its boxes are arbitrary rectangles whose
# scores cross bbox_thr and NMS at random), so the bound is on the share of
# float32 boxes found again (IoU >= 0.5), at about half the measured share.
BOUNDS = {
    "bf16": {"kpt_within_1px": 0.6, "kpt_px_median": 1.0, "score_p95": 0.01, "boxes_found": 0.08},
    "f16": {"kpt_within_1px": 0.8, "kpt_px_median": 0.5, "score_p95": 0.002, "boxes_found": 0.25},
    "int8": {"kpt_within_1px": 0.1, "kpt_px_median": 100.0, "score_p95": 0.04, "boxes_found": 0.03},
}
LOWER_BOUNDS = ("kpt_within_1px", "boxes_found")  # the others are upper bounds


def pose_drift(reference: list[dict], other: list[dict]) -> dict:
    """Keypoint (px) and score drift of `other`'s instances from `reference`'s
    (records of runs with the same boxes, in the same order)."""
    px, score = [], []
    for a, b in zip(reference, other):
        assert len(a["instances"]) == len(b["instances"]), "pose drift needs runs given the same boxes"
        for i, j in zip(a["instances"], b["instances"]):
            px.append(np.linalg.norm(np.subtract(i["keypoints"], j["keypoints"])[..., :2], axis=-1).ravel())
            score.append(np.abs(np.subtract(i["keypoint_scores"], j["keypoint_scores"])).ravel())
    px, score = np.concatenate(px), np.concatenate(score)
    return {"keypoints": int(px.size), "kpt_px_median": float(np.median(px)),
            "kpt_px_p95": float(np.percentile(px, 95)), "kpt_px_max": float(px.max()),
            "kpt_within_1px": float(np.mean(px <= 1.0)), "score_p95": float(np.percentile(score, 95)),
            "score_max": float(score.max())}


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def box_drift(reference: list[dict], other: list[dict]) -> dict:
    """IoU of each reference box with its best match in the other run, and score drift."""
    ious, score, unmatched = [], [], 0
    for a, b in zip(reference, other):
        theirs = np.array([i["bbox"] for i in b["instances"]], dtype=np.float64).reshape(-1, 4)
        their_scores = np.array([i["bbox_score"] for i in b["instances"]])
        for inst in a["instances"]:
            overlap = _iou(np.array(inst["bbox"], dtype=np.float64), theirs) if len(theirs) else np.zeros(0)
            if not len(overlap) or overlap.max() < 0.5:
                unmatched += 1
                continue
            ious.append(overlap.max())
            score.append(abs(inst["bbox_score"] - their_scores[overlap.argmax()]))
    ious, score = np.array(ious), np.array(score)
    return {"boxes": int(ious.size + unmatched), "boxes_found": float(ious.size / max(ious.size + unmatched, 1)),
            "iou_median": float(np.median(ious)) if ious.size else 0.0,
            "box_score_median": float(np.median(score)) if score.size else 0.0}


def within(stats: dict, precision: str) -> list[str]:
    """The bounds of `precision` that `stats` exceeds (empty: all held)."""
    out = []
    for key, bound in BOUNDS[precision].items():
        if key in stats:
            held = stats[key] >= bound if key in LOWER_BOUNDS else stats[key] <= bound
            if not held:
                out.append(f"{key} {stats[key]:.4g} (bound {bound})")
    return out

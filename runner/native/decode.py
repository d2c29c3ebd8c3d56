"""Network output -> keypoints and boxes, as MMPose's and MMDetection's
heads decode them (the same float32 arithmetic, in numpy):

- SimCC (RTMPose, RTMW, DWPose): flip-test merge, arg-max per axis, the split
  ratio, and the crop -> image map of TopdownPoseEstimator;
- RTMDet's raw head (the runner's own exports): sigmoid scores, per-level
  top-k above score_thr, point + distance boxes, MMCV's class-aware NMS;
- NMS as MMPose's demos keep boxes (mmpose.evaluation.functional.nms)."""
from __future__ import annotations

import numpy as np


# -- SimCC --------------------------------------------------------------------------
def merge_flipped(simcc_x: np.ndarray, simcc_y: np.ndarray, flipped_x: np.ndarray, flipped_y: np.ndarray,
                  flip_indices) -> tuple[np.ndarray, np.ndarray]:
    """RTMCCHead.predict's flip test: the flipped crop's vectors mirrored back
    (flip_vectors) and averaged with the plain crop's."""
    index = list(flip_indices)
    return (simcc_x + flipped_x[:, index][..., ::-1]) * 0.5, (simcc_y + flipped_y[:, index]) * 0.5


def simcc_maximum(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MMPose's get_simcc_maximum on (N, K, W) vectors: (locations (N, K, 2)
    float32, scores (N, K): the smaller of the two maxima; -1 where it is <= 0)."""
    n, k, _ = simcc_x.shape
    x, y = simcc_x.reshape(n * k, -1), simcc_y.reshape(n * k, -1)
    locs = np.stack((np.argmax(x, axis=1), np.argmax(y, axis=1)), axis=-1).astype(np.float32)
    vals = np.minimum(np.amax(x, axis=1), np.amax(y, axis=1))
    locs[vals <= 0.0] = -1
    return locs.reshape(n, k, 2), vals.reshape(n, k)


def simcc_keypoints(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float, input_size: tuple[int, int],
                    centers: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, K, 2) in image pixels and their scores (N, K): SimCCLabel.decode,
    then add_pred_to_datasample's map from the crop (input_size, w x h) to the
    image (each crop's centre and scale), in MMPose's dtypes."""
    locs, scores = simcc_maximum(simcc_x, simcc_y)
    keypoints = locs / split_ratio
    out = np.empty_like(keypoints)
    for i, (center, scale) in enumerate(zip(centers, scales)):
        out[i] = keypoints[i] / np.asarray(input_size) * scale + center - 0.5 * scale
    return out, scores


# -- boxes ---------------------------------------------------------------------------
def keep_boxes(dets: np.ndarray, thr: float) -> list[int]:
    """MMPose's nms (its demos' and inferencer's): greedy by score, a box is kept
    when it overlaps every kept box by at most `thr` (areas with MMPose's +1)."""
    if len(dets) == 0:
        return []
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= thr)[0] + 1]
    return keep


def mmcv_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """MMCV's nms op (CPU kernel, offset 0): indices kept, best first; a box is
    dropped when it overlaps a kept one by more than the threshold."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep, alive = [], np.ones(len(order), bool)
    for at, i in enumerate(order):
        if not alive[at]:
            continue
        keep.append(i)
        rest = order[at + 1:]
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        alive[at + 1:] &= ~(inter / (areas[i] + areas[rest] - inter) > np.float32(iou_threshold))
    return np.array(keep, dtype=np.int64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def rtmdet_boxes(cls_scores: list[np.ndarray], bbox_preds: list[np.ndarray], strides, input_hw: tuple[int, int],
                 scale_factor: tuple[float, float], test_cfg: dict) -> dict[str, np.ndarray]:
    """One image's boxes from RTMDet's raw head (per level (C, H, W) class logits
    and (4, H, W) distances in pixels), as BaseDenseHead._predict_by_feat_single
    and _bbox_post_process make them: bboxes (N, 4) in image pixels, scores, labels."""
    score_thr, nms_pre = float(test_cfg.get("score_thr", 0)), int(test_cfg.get("nms_pre", -1))
    all_boxes, all_scores, all_labels = [], [], []
    for cls, reg, stride in zip(cls_scores, bbox_preds, strides):
        c, h, w = cls.shape
        scores = sigmoid(cls.transpose(1, 2, 0).reshape(-1, c))
        distances = reg.transpose(1, 2, 0).reshape(-1, 4)
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) * stride, np.arange(w, dtype=np.float32) * stride,
                             indexing="ij")
        points = np.stack([xs.reshape(-1), ys.reshape(-1)], axis=-1)
        prior, label = np.nonzero(scores > score_thr)
        found = scores[prior, label]
        order = np.argsort(-found, kind="stable")[:nms_pre if nms_pre > 0 else None]
        prior, label = prior[order], label[order]
        all_scores.append(found[order])
        all_labels.append(label)
        px, d = points[prior], distances[prior]
        all_boxes.append(np.stack([px[:, 0] - d[:, 0], px[:, 1] - d[:, 1], px[:, 0] + d[:, 2],
                                   px[:, 1] + d[:, 3]], axis=-1))
    boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
    labels = np.concatenate(all_labels).astype(np.int64)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, input_hw[1])
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, input_hw[0])
    boxes = boxes * np.array([1 / s for s in scale_factor] * 2, dtype=np.float32)
    if float(test_cfg.get("min_bbox_size", -1)) >= 0:
        size = float(test_cfg["min_bbox_size"])
        valid = (boxes[:, 2] - boxes[:, 0] > size) & (boxes[:, 3] - boxes[:, 1] > size)
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    if len(boxes):
        shifted = boxes + (labels.astype(np.float32) * (boxes.max() + np.float32(1)))[:, None]  # class-aware
        keep = mmcv_nms(shifted, scores, float(test_cfg["nms"]["iou_threshold"]))
        keep = keep[:int(test_cfg.get("max_per_img", len(keep)))]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    return {"bboxes": boxes.astype(np.float32).reshape(-1, 4), "scores": scores.astype(np.float32).reshape(-1),
            "labels": labels.reshape(-1)}

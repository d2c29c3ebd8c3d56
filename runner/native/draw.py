"""2D overlays in OpenCV, drawn as MMPose's PoseLocalVisualizer (OpenCV
backend, 'mmpose' skeleton style) draws them, call for call: each instance's
links and keypoints in its keypoint set's colours (those below
visualize.kpt_thr left out: MMPoseInferencer's rule, a keypoint's score is its
visibility), then the boxes in green."""
from __future__ import annotations

import cv2
import numpy as np

from runner.native.keypoints import KeypointSet

BOX_COLOR = (0, 255, 0)  # MMPose's bbox_color 'green'


def draw_poses(image: np.ndarray, boxes: np.ndarray | None, poses: list[dict], keypoints: KeypointSet | None,
               kpt_thr: float, radius: int, thickness: int, draw_bbox: bool) -> np.ndarray:
    """A copy of the BGR `image` with the boxes (N, 4) and poses drawn."""
    out = np.ascontiguousarray(image.copy())
    if keypoints is not None:
        _draw_keypoints(out, poses, keypoints, kpt_thr, radius, thickness)
    if draw_bbox and boxes is not None:
        for box in np.asarray(boxes).astype(np.int32).reshape(-1, 4):
            cv2.rectangle(out, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), BOX_COLOR, thickness=thickness)
    return out


def _draw_keypoints(out: np.ndarray, poses: list[dict], keypoints: KeypointSet, kpt_thr: float, radius: int,
                    thickness: int) -> None:
    h, w = out.shape[:2]
    link_colors = [tuple(int(c) for c in color[::-1]) for color in keypoints.link_colors]   # RGB -> BGR
    point_colors = [tuple(int(c) for c in color[::-1]) for color in keypoints.keypoint_colors]
    for pose in poses:
        kpts, visible = pose["keypoints"][..., :2], pose["keypoint_scores"]
        for (a, b), color in zip(keypoints.skeleton, link_colors):
            p1, p2 = (int(kpts[a, 0]), int(kpts[a, 1])), (int(kpts[b, 0]), int(kpts[b, 1]))
            if p1[0] <= 0 or p1[0] >= w or p1[1] <= 0 or p1[1] >= h or p2[0] <= 0 or p2[0] >= w or p2[1] <= 0 \
                    or p2[1] >= h or visible[a] < kpt_thr or visible[b] < kpt_thr:
                continue
            cv2.line(out, p1, p2, color, thickness=thickness)
        for point, score, color in zip(kpts, visible, point_colors):
            if score >= kpt_thr:
                cv2.circle(out, (int(point[0]), int(point[1])), int(radius), color, -1)

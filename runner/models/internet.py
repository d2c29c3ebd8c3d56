"""InterNet, the 3D hand model: from a hand crop, 42 joints (right hand 0-20,
left hand 21-41) as image pixels plus root-relative depth, the left root's
depth relative to the right one, and which hands are present. MMPose's own
pipeline and decoding; camera-space coordinates need the camera (see
`to_camera`)."""
from __future__ import annotations

import numpy as np

from runner.models.topdown import TopdownEstimator

HANDS = ("right", "left")  # InterHand2.6M order: joints 0-20 right, 21-41 left


class Hand3DEstimator(TopdownEstimator):
    @staticmethod
    def postprocess(pose_sample) -> dict[str, np.ndarray]:
        pred = pose_sample.pred_instances
        return {"keypoints": np.asarray(pred.keypoints[0], np.float32),        # (42, 3)
                "keypoint_scores": np.asarray(pred.keypoint_scores[0], np.float32),
                "rel_root_depth": np.asarray(pred.rel_root_depth, np.float32).reshape(1),
                "hand_type": np.asarray(pred.hand_type, np.float32).reshape(2)}


def to_camera(raw: dict[str, np.ndarray], focal, principal_point, right_root_depth: float,
              left_root_depth: float | None = None) -> dict:
    """MMPose's InterHand conversion (as its InterHandMetric does): each hand's
    depth relative to its root, plus the root's absolute depth (mm), back-projected
    through the pinhole camera. Without the left root's depth it is the right
    one's plus the predicted relative root depth. Returns the exported fields."""
    from mmpose.codecs.utils import pixel_to_camera

    kpts = raw["keypoints"].astype(np.float64).copy()
    present = raw["hand_type"] > 0
    scores = raw["keypoint_scores"].copy()
    scores[:21] *= present[0]  # a hand the model says is absent is not drawn (as the demo)
    scores[21:] *= present[1]
    if scores.max() > 1:  # heatmap maxima reach the codec's max_bound (255): the demo rescales
        scores /= 255
    depth = kpts.copy()
    if left_root_depth is None:
        left_root_depth = right_root_depth + float(raw["rel_root_depth"][0])
    depth[:21, 2] += right_root_depth
    depth[21:, 2] += left_root_depth
    camera = pixel_to_camera(depth[None], focal[0], focal[1], principal_point[0], principal_point[1])[0]
    if present.all():
        handedness = "both"
    else:
        handedness = HANDS[int(np.argmax(present))] if present.any() else "none"
    return {"keypoints": kpts[:, :2].astype(np.float32),          # the 2D projection, pixels
            "keypoint_scores": scores.astype(np.float32),
            "keypoints_3d": camera.astype(np.float32),            # camera space, mm
            "rel_root_depth": float(raw["rel_root_depth"][0]),    # left root - right root, mm
            "handedness": handedness,
            "hand_present": {h: bool(p) for h, p in zip(HANDS, present)}}

"""InterNet, the 3D hand model: from a hand crop, 42 joints (right hand 0-20,
left hand 21-41) as image pixels plus root-relative depth, the left root's
depth relative to the right one, and which hands are present. MMPose's own
pipeline and decoding. The raw 2.5D output is cached; camera-space
coordinates are derived from it with pose.camera (`attach`), so changing the
camera never re-runs the model."""
from __future__ import annotations

import numpy as np

from runner.models.topdown import TopdownEstimator

HANDS = ("right", "left")  # InterHand2.6M order: joints 0-20 right, 21-41 left
ASSUMED_ROOT_DEPTH_MM = 1000.0


class Hand3DEstimator(TopdownEstimator):
    def postprocess(self, pose_sample) -> dict[str, np.ndarray]:
        pred = pose_sample.pred_instances
        return {"keypoints": np.asarray(pred.keypoints[0], np.float32),        # (42, 3)
                "keypoint_scores": np.asarray(pred.keypoint_scores[0], np.float32),
                "rel_root_depth": np.asarray(pred.rel_root_depth, np.float32).reshape(1),
                "hand_type": np.asarray(pred.hand_type, np.float32).reshape(2)}

    @staticmethod
    def attach(record, slot, raw, cfg) -> None:
        cam = cfg.pose.get("camera") or {}
        given = cam.get("focal") is not None and cam.get("principal_point") is not None
        size = None if given else record.item.image().shape[1::-1]  # decode only when needed
        focal, centre, right, left, assumed = camera(cam, size)
        record.set_pose(slot, to_camera(raw, focal, centre, right, left))
        if assumed and assumed not in record.notes:
            record.notes.append(assumed)


def camera(cam, size: tuple[int, int] | None):
    """pose.camera, with what is not given assumed (and said so in a note):
    principal point at the image centre, focal length = the image's longer
    side (about 53 degrees of view), right hand root 1 m from the camera.
    `size` (width, height) is needed only when the focal or centre is not given.
    Returns (focal, centre, right root depth, left root depth or None, note)."""
    focal, centre, depth = cam.get("focal"), cam.get("principal_point"), cam.get("root_depth")
    width, height = size or (0, 0)
    assumed = []
    if focal is None:
        focal = [float(max(height, width))] * 2
        assumed.append(f"focal={focal[0]:g} px")
    if centre is None:
        centre = [width / 2, height / 2]
        assumed.append(f"principal point=({centre[0]:g}, {centre[1]:g})")
    if depth is None:
        depth = [ASSUMED_ROOT_DEPTH_MM]
        assumed.append(f"right root depth={ASSUMED_ROOT_DEPTH_MM:g} mm")
    depth = [float(depth)] if isinstance(depth, (int, float)) else [float(d) for d in depth]
    note = ("keypoints_3d assume a camera (" + ", ".join(assumed) + "): set pose.camera.focal, "
            ".principal_point and .root_depth for metric coordinates") if assumed else ""
    return focal, centre, depth[0], (depth[1] if len(depth) > 1 else None), note


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
    points = pixel_to_camera(depth[None], focal[0], focal[1], principal_point[0], principal_point[1])[0]
    if present.all():
        handedness = "both"
    else:
        handedness = HANDS[int(np.argmax(present))] if present.any() else "none"
    return {"keypoints": kpts[:, :2].astype(np.float32),          # the 2D projection, pixels
            "keypoint_scores": scores.astype(np.float32),
            "keypoints_3d": points.astype(np.float32),            # camera space, mm
            "rel_root_depth": float(raw["rel_root_depth"][0]),    # left root - right root, mm
            "handedness": handedness,
            "hand_present": {h: bool(p) for h, p in zip(HANDS, present)}}

"""MediaPipe's hand landmark model (hand_landmark_full) as a hand pose model,
as hand_landmark_cpu.pbtxt runs it: the hand's square region cropped to the
network's input (RGB, [0, 1], border replicated), 21 keypoints in MMPose's
hand order (wrist, then 4 per finger from thumb to little finger) mapped back
to the image through the region, world keypoints (metres) turned with it.

The region: a palm's hand region (detect/model=mediapipe_palm: rotated, the
record's `box_angles`), or, for any other hand box, the upright square around
it grown `padding` times. The model has no per-keypoint confidence: every
keypoint's score is the hand presence probability. Handedness: the network's
score is MediaPipe's "Left" (handedness.txt, first label) for a MIRRORED
(selfie) image, i.e. the probability that the hand is the person's RIGHT hand
in an ordinary photo; checked against the left/right hands of COCO-WholeBody's
ground truth (tests/test_mediapipe.py)."""
from __future__ import annotations

import numpy as np

from runner.boxes import around
from runner.native.mediapipe import LandmarkModel, Region, crop, rotate, to_image

NORMALIZE_Z = 0.4  # TensorsToLandmarksCalculatorOptions of hand_landmark_cpu.pbtxt


class NativeHandLandmark(LandmarkModel):
    """One unit per hand box (and its region's angle, when a palm gave one)."""
    code_version = 1
    takes_angles = True
    what = "MediaPipe's hand landmark model"
    keypoints, num_keypoints = "coco_wholebody_hand", 21
    wanted = {"Identity": (1, 63), "Identity_1": (1, 1), "Identity_2": (1, 1), "Identity_3": (1, 63)}

    def region(self, box: np.ndarray, angle=None) -> Region:
        return Region.upright(box, self.model.padding) if angle is None else Region.of_bounds(box, float(angle))

    def predict(self, inputs: list[tuple]) -> list[dict[str, np.ndarray]]:
        """Per (image, box) or (image, box, angle): keypoints (21, 2) in image
        pixels, keypoint_scores (21,), keypoint_z (21,) relative depth in image
        pixels (smaller: nearer), world_keypoints (21, 3) metres, and the raw
        hand presence, handedness (the right hand's probability) and region."""
        out = []
        for image, box, *angle in inputs:
            region = self.region(box, angle[0] if angle else None)
            found = self.network(crop(image, region, self.model.size, self.model.border)[None])
            points = found[self.index["Identity"]].reshape(21, 3)
            presence = float(found[self.index["Identity_1"]].reshape(-1)[0])
            scale = region.side / self.model.size
            out.append({
                "keypoints": to_image(points[:, :2], region.to_image(self.model.size)),
                "keypoint_scores": np.full(21, presence, np.float32),
                "keypoint_z": (points[:, 2] * (scale / NORMALIZE_Z)).astype(np.float32),
                "world_keypoints": rotate(found[self.index["Identity_3"]].reshape(21, 3), region.rotation),
                "hand_presence": np.array([presence], np.float32),
                "right_hand": found[self.index["Identity_2"]].reshape(1).astype(np.float32),
                "region": np.array([*region.center, region.side, region.rotation], np.float32)})
        return out

    @staticmethod
    def attach(record, slot, raw, cfg) -> None:
        """The exported fields: handedness ("left" / "right" and its
        probability), the hand presence; where a palm gave the region, the
        region, and the record's box becomes the box of the keypoints (their
        extent grown 1.25x, as rtmlib and detect.every make a box of a pose:
        the hand's box, which ground-truth hand boxes are matched to; the
        region, 2.6x the palm, is far larger)."""
        right = float(raw["right_hand"][0])
        pose = {"keypoints": raw["keypoints"], "keypoint_scores": raw["keypoint_scores"],
                "keypoint_z": raw["keypoint_z"], "world_keypoints": raw["world_keypoints"],
                "hand_presence": float(raw["hand_presence"][0]),
                "handedness": "right" if right >= 0.5 else "left", "handedness_score": max(right, 1 - right)}
        if getattr(record, "box_angles", None) is not None:
            x, y, side, rotation = (float(v) for v in raw["region"])
            pose["hand_region"] = {"center": [x, y], "size": side, "rotation": rotation}
            record.boxes[slot] = around(raw["keypoints"])
        record.set_pose(slot, pose)

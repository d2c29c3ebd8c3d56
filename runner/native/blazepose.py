"""BlazePose GHUM (pose_landmark_full) as a top-down body pose model on any
person box, as MediaPipe's pose_landmark_by_roi_cpu.pbtxt runs it on its
region: the upright square around the box (centre, longer side x `padding`)
cropped to the network's input (RGB, [0, 1], border replicated: MediaPipe's
default), 39 landmarks (33 body + 6 auxiliary) refined with the heatmap
(RefineLandmarksFromHeatmapCalculator, kernel 7) and mapped back to the image.

Its keypoints are the 17 COCO ones among the 33 (COCO_OF_BLAZEPOSE), scored
by the sigmoid of their visibility logits, so evaluation, overlays, tracking,
smoothing and every export take it as any COCO body model; the 33 landmarks,
their visibility, presence and depth, the world landmarks (metres,
hip-centred) and the pose presence are kept beside them."""
from __future__ import annotations

import numpy as np

from runner.native.mediapipe import LandmarkModel, Region, crop, sigmoid, to_image

# COCO's 17 (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles) among BlazePose's 33.
COCO_OF_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
BODY = 33                   # landmarks 33-38 are auxiliary (MediaPipe's next region)
HEATMAP_KERNEL = 7          # tensors_to_pose_landmarks_and_segmentation.pbtxt
HEATMAP_MIN_CONFIDENCE = 0.5  # RefineLandmarksFromHeatmapCalculatorOptions' default


def refine(points: np.ndarray, heatmap: np.ndarray, size: int) -> np.ndarray:
    """Landmarks (K, 2) in crop pixels moved to the sigmoid-weighted mean of the
    heatmap (H, W, K) in a kernel around each, where the heatmap's maximum there
    is confident, as RefineLandmarksFromHeatMap does (its column test of the row,
    and its weights at the cells' corners, kept)."""
    height, width, _ = heatmap.shape
    out, half = points.copy(), (HEATMAP_KERNEL - 1) // 2
    for k, (x, y) in enumerate(points):
        col, row = int(x / size * width), int(y / size * height)
        if col < 0 or col >= width or row < 0 or col >= height:
            continue
        rows = slice(max(0, row - half), min(height, row + half + 1))
        cols = slice(max(0, col - half), min(width, col + half + 1))
        confidence = sigmoid(heatmap[rows, cols, k])
        total = confidence.sum(dtype=np.float32)
        if confidence.size and confidence.max() >= HEATMAP_MIN_CONFIDENCE and total > 0:
            r, c = np.mgrid[rows, cols]
            out[k] = ((c * confidence).sum() / width / total * size, (r * confidence).sum() / height / total * size)
    return out


class NativeBlazePose(LandmarkModel):
    """One unit per person box."""
    code_version = 1
    what = "BlazePose's landmark model"
    keypoints, num_keypoints = "coco", len(COCO_OF_BLAZEPOSE)
    wanted = {"Identity": (1, 195), "Identity_1": (1, 1), "Identity_3": (1, 64, 64, 39), "Identity_4": (1, 117)}

    def predict(self, inputs: list[tuple]) -> list[dict[str, np.ndarray]]:
        """Per (image, box): keypoints (17, 2) in image pixels and their scores;
        landmarks (33, 2) in image pixels, landmark_z (33,) relative depth in
        image pixels (smaller: nearer), landmark_visibility and
        landmark_presence (33,) probabilities, world_landmarks (33, 3) metres,
        pose_presence (1,) probability."""
        size, out = self.model.size, []
        for image, box, *_ in inputs:
            region = Region.upright(box, self.model.padding)
            found = self.network(crop(image, region, size, self.model.border)[None])
            raw = found[self.index["Identity"]].reshape(-1, 5)
            points = refine(raw[:, :2], found[self.index["Identity_3"]][0], size)[:BODY]
            landmarks = to_image(points, region.to_image(size))
            visibility = sigmoid(raw[:BODY, 3])
            coco = list(COCO_OF_BLAZEPOSE)
            out.append({"keypoints": landmarks[coco], "keypoint_scores": visibility[coco],
                        "landmarks": landmarks, "landmark_z": (raw[:BODY, 2] * (region.side / size)).astype(np.float32),
                        "landmark_visibility": visibility, "landmark_presence": sigmoid(raw[:BODY, 4]),
                        "world_landmarks": found[self.index["Identity_4"]].reshape(-1, 3)[:BODY].astype(np.float32),
                        "pose_presence": found[self.index["Identity_1"]].reshape(1).astype(np.float32)})
        return out

    @staticmethod
    def attach(record, slot, raw, cfg) -> None:
        record.set_pose(slot, {**raw, "pose_presence": float(raw["pose_presence"][0])})

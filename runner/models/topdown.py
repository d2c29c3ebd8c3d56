"""Top-down pose models (RTMPose body / hand, RTMW, DWPose): MMPose's own test
pipeline (box -> affine crop) and model, one unit of work per box, batched
across boxes and images."""
from __future__ import annotations

import numpy as np

from runner.models.base import Estimator


class Topdown:
    """What a top-down pose model's results are, whichever engine runs it:
    one unit per box, keypoints (K, 2) and keypoint_scores (K,) per unit;
    MMPose's heads of these (RTMCC, RTMW, InterNet's) implement its flip test."""
    unit = "box"
    has_flip_test = True
    int8_preset = "mixed"  # NNCF's preset for its int8 network (backends/openvino.PRESETS): SiLU activations

    @staticmethod
    def attach(record, slot, raw, cfg) -> None:
        record.set_pose(slot, raw)


class TopdownEstimator(Topdown, Estimator):

    def preprocess(self, image: np.ndarray, box: np.ndarray | None = None) -> dict:
        """One crop, exactly as inference_topdown builds it."""
        info = dict(img=image, bbox=np.asarray(box)[None], bbox_score=np.ones(1, dtype=np.float32))
        info.update(self.model.dataset_meta)
        return self.pipeline(info)

    def postprocess(self, pose_sample) -> dict[str, np.ndarray]:
        """keypoints (K, 2) in image pixels, keypoint_scores (K,)."""
        pred = pose_sample.pred_instances
        return {"keypoints": np.asarray(pred.keypoints[0], dtype=np.float32),
                "keypoint_scores": np.asarray(pred.keypoint_scores[0], dtype=np.float32)}

"""Top-down pose models (RTMPose body / hand, RTMW, DWPose): MMPose's own test
pipeline (bbox -> affine crop) and model, batched across boxes and images."""
from __future__ import annotations

import numpy as np
import torch


class TopdownEstimator:
    def __init__(self, model):
        from runner.models.loading import build_test_pipeline
        self.model = model
        self.scope, self.pipeline = build_test_pipeline(model, "mmpose")

    # -- pre-processing ------------------------------------------------------
    def preprocess(self, image: np.ndarray, bbox: np.ndarray) -> dict:
        """One crop, exactly as inference_topdown builds it."""
        info = dict(img=image, bbox=np.asarray(bbox)[None], bbox_score=np.ones(1, dtype=np.float32))
        info.update(self.model.dataset_meta)
        return self.pipeline(info)

    # -- forward + post-processing -------------------------------------------
    def predict(self, crops: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Keypoints per (image, xyxy box): keypoints (K, 2) in image pixels,
        keypoint_scores (K,)."""
        from mmengine.dataset import pseudo_collate
        from mmengine.registry import DefaultScope

        with DefaultScope.overwrite_default_scope(self.scope):
            batch = pseudo_collate([self.preprocess(img, box) for img, box in crops])
        with torch.no_grad():
            samples = self.model.test_step(batch)
        return [self.postprocess(s) for s in samples]

    @staticmethod
    def postprocess(pose_sample) -> dict[str, np.ndarray]:
        pred = pose_sample.pred_instances
        return {"keypoints": np.asarray(pred.keypoints[0], dtype=np.float32),
                "keypoint_scores": np.asarray(pred.keypoint_scores[0], dtype=np.float32)}

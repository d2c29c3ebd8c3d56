"""RTMO, the one-stage (bottom-up) body model: people's boxes and keypoints
from the whole image in one pass, with MMPose's own pipeline and decoding."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch


class BottomupEstimator:
    def __init__(self, model):
        from runner.models.loading import build_test_pipeline
        self.model = model
        self.scope, self.pipeline = build_test_pipeline(model, "mmpose")

    # -- pre-processing ------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> dict:
        """One image, exactly as inference_bottomup builds it (letterboxed to the input size)."""
        info = dict(img=image)
        info.update(self.model.dataset_meta)
        return self.pipeline(info)

    # -- forward + post-processing -------------------------------------------
    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image: keypoints (N, K, 2), keypoint_scores (N, K), bboxes (N, 4)
        and bbox_scores (N,), in image pixels."""
        from mmengine.dataset import pseudo_collate
        from mmengine.registry import DefaultScope

        with DefaultScope.overwrite_default_scope(self.scope):
            prepared = [self.preprocess(img) for img in images]
        groups = defaultdict(list)  # equal input shapes only: padding would change numbers
        for i, data in enumerate(prepared):
            groups[tuple(data["inputs"].shape)].append(i)
        results: list = [None] * len(images)
        for indices in groups.values():
            with torch.no_grad():
                samples = self.model.test_step(pseudo_collate([prepared[i] for i in indices]))
            for i, sample in zip(indices, samples):
                results[i] = self.postprocess(sample)
        return results

    @staticmethod
    def postprocess(sample) -> dict[str, np.ndarray]:
        pred = sample.pred_instances
        k = pred.keypoints.shape[1] if len(pred.keypoints) else 17
        return {"keypoints": np.asarray(pred.keypoints, np.float32).reshape(-1, k, 2),
                "keypoint_scores": np.asarray(pred.keypoint_scores, np.float32).reshape(-1, k),
                "bboxes": np.asarray(pred.bboxes, np.float32).reshape(-1, 4),
                "bbox_scores": np.asarray(pred.bbox_scores, np.float32).reshape(-1)}

"""RTMO, the one-stage (bottom-up) body model: people's boxes and keypoints
from the whole image in one pass, with MMPose's own pipeline and decoding.
Its raw instances are cached; detect.bbox_thr filters them by box score
afterwards (as MMPoseInferencer's bbox_thr does), without re-running it."""
from __future__ import annotations

import numpy as np

from runner.models.base import Estimator


class BottomupEstimator(Estimator):
    unit = "image"
    has_flip_test = False  # MMPose's RTMOHead implements none: its predict fails on the flipped features

    def preprocess(self, image: np.ndarray, box=None) -> dict:
        """One image, exactly as inference_bottomup builds it (letterboxed to the input size)."""
        info = dict(img=image)
        info.update(self.model.dataset_meta)
        return self.pipeline(info)

    def postprocess(self, sample) -> dict[str, np.ndarray]:
        """keypoints (N, K, 2), keypoint_scores (N, K), bboxes (N, 4) and
        bbox_scores (N,), in image pixels."""
        pred = sample.pred_instances
        k = pred.keypoints.shape[1] if len(pred.keypoints) else 17
        return {"keypoints": np.asarray(pred.keypoints, np.float32).reshape(-1, k, 2),
                "keypoint_scores": np.asarray(pred.keypoint_scores, np.float32).reshape(-1, k),
                "bboxes": np.asarray(pred.bboxes, np.float32).reshape(-1, 4),
                "bbox_scores": np.asarray(pred.bbox_scores, np.float32).reshape(-1)}

    @staticmethod
    def attach(record, slot, raw, cfg) -> None:
        keep = raw["bbox_scores"] > float(cfg.detect.bbox_thr)
        record.boxes, record.box_scores = raw["bboxes"][keep], raw["bbox_scores"][keep]
        record.poses = [{"keypoints": k, "keypoint_scores": s} for k, s in
                        zip(raw["keypoints"][keep], raw["keypoint_scores"][keep])]

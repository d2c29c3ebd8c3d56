"""Detectors from MMDetection (RTMDet person / hand): MMDetection's own test
pipeline and model, with images batched where that cannot change the numbers."""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import torch


class MMDetDetector:
    def __init__(self, model):
        from runner.models.loading import build_test_pipeline
        self.model = model
        steps = copy.deepcopy(model.cfg.test_dataloader.dataset.pipeline)
        steps[0].type = "mmdet.LoadImageFromNDArray"  # as inference_detector does for arrays
        self.scope, self.pipeline = build_test_pipeline(model, "mmdet", steps)

    # -- pre-processing ------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> dict:
        return self.pipeline(dict(img=image, img_id=0))

    # -- forward + post-processing -------------------------------------------
    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Raw detections per image (before any score threshold):
        bboxes (N, 4) xyxy in image pixels, scores (N,), labels (N,)."""
        from mmengine.registry import DefaultScope

        with DefaultScope.overwrite_default_scope(self.scope):
            prepared = [self.preprocess(img) for img in images]
        # The data preprocessor pads a batch to its largest input: batch only
        # equal shapes, so each image's numbers match a batch of one.
        groups = defaultdict(list)
        for i, data in enumerate(prepared):
            groups[tuple(data["inputs"].shape)].append(i)
        results: list = [None] * len(images)
        for indices in groups.values():
            batch = {"inputs": [prepared[i]["inputs"] for i in indices],
                     "data_samples": [prepared[i]["data_samples"] for i in indices]}
            with torch.no_grad():
                outputs = self.model.test_step(batch)
            for i, out in zip(indices, outputs):
                results[i] = postprocess(out)
        return results


def postprocess(det_sample) -> dict[str, np.ndarray]:
    pred = det_sample.pred_instances.cpu().numpy()
    return {"bboxes": pred.bboxes.astype(np.float32).reshape(-1, 4),
            "scores": pred.scores.astype(np.float32).reshape(-1),
            "labels": pred.labels.astype(np.int64).reshape(-1)}


def select_boxes(raw: dict[str, np.ndarray], cat_ids, bbox_thr: float, nms_thr: float | None):
    """Keep boxes as MMPose's demo and inferencer do: wanted category, score
    above bbox_thr, then NMS. Returns (bboxes (M, 4), scores (M,)), best first."""
    from mmpose.evaluation.functional import nms

    keep = np.isin(raw["labels"], list(cat_ids)) & (raw["scores"] > bbox_thr)
    boxes = np.concatenate([raw["bboxes"][keep], raw["scores"][keep, None]], axis=1)
    if nms_thr is not None and len(boxes):
        boxes = boxes[nms(boxes, nms_thr)]
    return boxes[:, :4].astype(np.float32), boxes[:, 4].astype(np.float32)

"""Detectors from MMDetection (RTMDet person / hand): MMDetection's own test
pipeline and model. The raw output (every box before any threshold) is what
is cached; `attach` keeps boxes as MMPose's demo and inferencer do."""
from __future__ import annotations

import copy

import numpy as np

from runner.models.base import Estimator


class Detector:
    """What a detector's results are, whichever engine runs it: one unit per
    image, every box before any threshold (bboxes, scores, labels); `attach`
    keeps boxes as MMPose's demo and inferencer do."""
    unit = "image"
    makes_boxes = True
    int8_preset = "mixed"  # NNCF's preset for its int8 network (backends/openvino.PRESETS): SiLU activations

    @staticmethod
    def attach(record, slot, raw, cfg) -> None:
        record.boxes, record.box_scores = select_boxes(
            raw, cfg.detect.model.cat_ids, float(cfg.detect.bbox_thr), float(cfg.detect.nms_thr))


class MMDetDetector(Detector, Estimator):
    library = "mmdet"

    def pipeline_steps(self, model):
        steps = copy.deepcopy(model.cfg.test_dataloader.dataset.pipeline)
        steps[0].type = "mmdet.LoadImageFromNDArray"  # as inference_detector does for arrays
        return steps

    def preprocess(self, image: np.ndarray, box=None) -> dict:
        return self.pipeline(dict(img=image, img_id=0))

    def postprocess(self, det_sample) -> dict[str, np.ndarray]:
        """bboxes (N, 4) xyxy in image pixels, scores (N,), labels (N,)."""
        pred = det_sample.pred_instances.cpu().numpy()
        return {"bboxes": pred.bboxes.astype(np.float32).reshape(-1, 4),
                "scores": pred.scores.astype(np.float32).reshape(-1),
                "labels": pred.labels.astype(np.int64).reshape(-1)}


def select_boxes(raw: dict[str, np.ndarray], cat_ids, bbox_thr: float, nms_thr: float | None):
    """Keep boxes as MMPose's demo and inferencer do: wanted category, score
    above bbox_thr, then NMS. Returns (bboxes (M, 4), scores (M,)), best first."""
    from runner.native.decode import keep_boxes

    keep = np.isin(raw["labels"], list(cat_ids)) & (raw["scores"] > bbox_thr)
    boxes = np.concatenate([raw["bboxes"][keep], raw["scores"][keep, None]], axis=1)
    if nms_thr is not None and len(boxes):
        boxes = boxes[keep_boxes(boxes, nms_thr)]
    return boxes[:, :4].astype(np.float32), boxes[:, 4].astype(np.float32)

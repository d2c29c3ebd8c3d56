"""MMPose's own inference paths, as its demos and docs use them: what the
runner's outputs are compared against in the parity tests."""
from __future__ import annotations

import numpy as np


def load_detector(name: str, checkpoint):
    """init_detector with the pipeline adapted as topdown_demo_with_mmdet.py does."""
    from mmdet.apis import init_detector
    from mmpose.utils import adapt_mmdet_pipeline
    from runner.models.loading import resolve_config_path
    from runner.models.registry import load_entry

    model = init_detector(str(resolve_config_path(load_entry(name).config)), str(checkpoint), device="cpu")
    model.cfg = adapt_mmdet_pipeline(model.cfg)
    return model


def load_pose_model(name: str, checkpoint):
    from mmpose.apis import init_model
    from runner.models.loading import resolve_config_path
    from runner.models.registry import load_entry
    return init_model(str(resolve_config_path(load_entry(name).config)), str(checkpoint), device="cpu")


def reference_boxes(det_model, image_path, bbox_thr=0.3, nms_thr=0.3, cat_id=0):
    """topdown_demo_with_mmdet.py: inference_detector, then category, score and
    NMS filtering. (N, 5) boxes xyxy + score."""
    from mmdet.apis import inference_detector
    from mmpose.evaluation.functional import nms
    pred = inference_detector(det_model, str(image_path)).pred_instances.cpu().numpy()
    boxes = np.concatenate((pred.bboxes, pred.scores[:, None]), axis=1)
    boxes = boxes[np.logical_and(pred.labels == cat_id, pred.scores > bbox_thr)]
    return boxes[nms(boxes, nms_thr)]


def assert_instances_match(instances: list[dict], samples, atol=1e-4) -> None:
    """The runner's exported instances against inference_topdown's samples (one per box)."""
    assert len(instances) == len(samples)
    for inst, sample in zip(instances, samples):
        pred = sample.pred_instances
        np.testing.assert_allclose(inst["keypoints"], pred.keypoints[0][..., :2], atol=atol)
        np.testing.assert_allclose(inst["keypoint_scores"], pred.keypoint_scores[0], atol=1e-5)

"""MMPose's own inference paths, as its demos and docs use them: what the
runner's outputs are compared against in the parity tests, and the float32
tolerance of those comparisons.

Why results differ at all, and by how much (REORDER_RTOL)
---------------------------------------------------------
The runner and MMPose's inference_topdown run the same float32 network on the
same crops, but not in the same batches: the runner batches up to
pose.batch_size boxes across images, inference_topdown one image's boxes (and
ONNX Runtime folds BatchNorm into the convolutions and picks other kernels).
oneDNN / MLAS choose kernels and blocking by shape, and AVX2 and AVX-512
machines use different vector widths, so the same sums are added in another
order. Reordering a float32 sum of n terms moves it by about sqrt(n)*u times
the sum of the terms' magnitudes (u = 2**-24, rounding errors of random sign);
normalisation keeps each layer's activations at about the scale of its output,
so over D layers the output moves by about D*sqrt(n)*u relative to its scale.
For RTMPose / RTMW / DWPose / InterNet (D ~ 100 layers, fan-in n <= 3*3*384 ~
3500): 100 * 59 * 6e-8 ~ 3.5e-4. REORDER_RTOL = 1e-3 takes about 3x that,
relative to the output's scale: the largest |value| of the SimCC vector (or
heatmap) a keypoint is read from.

What follows for each output:
- a keypoint score is a maximum of such an output (SimCC: the mean of the x
  and y maxima): it moves by at most REORDER_RTOL * scale;
- a keypoint coordinate is the position of that maximum (an argmax bin, then
  the crop's affine map in float32): it is the same bin unless the top two bins
  are within 2 * REORDER_RTOL * scale of each other, a near-tie that another
  batch or CPU may break the other way (about 1-7% of the fabricated test
  models' keypoints are such ties). Decided coordinates must agree to
  COORD_ATOL px: the affine map of the same bin, a few float32 ulps of values
  below 10^4 px. Near-tied coordinates are not compared (and counted).
"""
from __future__ import annotations

import contextlib

import numpy as np

REORDER_RTOL = 1e-3
COORD_ATOL = 1e-3  # px


def load_detector(name: str, checkpoint):
    """init_detector with the pipeline adapted as topdown_demo_with_mmdet.py does."""
    from mmdet.apis import init_detector
    from mmpose.utils import adapt_mmdet_pipeline
    from runner.models.configs import resolve_config_path
    from runner.models.registry import load_entry

    model = init_detector(str(resolve_config_path(load_entry(name).config)), str(checkpoint), device="cpu")
    model.cfg = adapt_mmdet_pipeline(model.cfg)
    return model


def load_pose_model(name: str, checkpoint):
    from mmpose.apis import init_model
    from runner.models.configs import resolve_config_path
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


def _top2_margin(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `values` (rows, bins): its scale (largest |value|) and how far
    its top bin stands above the runner-up, relative to that scale."""
    top2 = np.sort(values, axis=-1)[..., -2:]
    scale = np.abs(values).max(axis=-1)
    return scale, (top2[..., 1] - top2[..., 0]) / np.maximum(scale, 1e-30)


@contextlib.contextmanager
def decoding_margins():
    """While active, MMPose's SimCC heads (RTMCCHead, RTMWHead) and InterNet's
    3D-heatmap head keep, in every prediction they decode, per keypoint: the
    scale of the output it was read from (`decode_scale`, (1, K)) and, per
    coordinate, the top-two margin of the argmax that placed it
    (`decode_margin`, (1, K, D)). MMPose's decoding itself is unchanged."""
    from mmpose.models.heads import InternetHead, RTMCCHead, RTMWHead

    def simcc(original):
        def decode(self, batch_outputs):
            preds = original(self, batch_outputs)
            xs, ys = (t.detach().cpu().numpy() for t in batch_outputs)
            for pred, x, y in zip(preds, xs, ys):
                (sx, mx), (sy, my) = _top2_margin(x), _top2_margin(y)
                pred.decode_scale = np.maximum(sx, sy)[None]       # score = mean of the two maxima
                pred.decode_margin = np.stack([mx, my], -1)[None]   # each relative to its own vector
            return preds
        return decode

    def heatmap3d(original):
        def decode(self, batch_outputs):
            preds = original(self, batch_outputs)
            heatmaps, _, types = (t.detach().cpu().numpy() for t in batch_outputs)
            for pred, heatmap, logits in zip(preds, heatmaps, types):
                scale, margin = _top2_margin(heatmap.reshape(len(heatmap), -1))
                pred.decode_scale = scale[None]
                pred.decode_margin = np.repeat(margin[:, None], 3, axis=1)[None]  # x, y, z move together
                pred.hand_type_logits = logits.reshape(1, -1)  # hand_type = logits > 0
            return preds
        return decode

    patched = {RTMCCHead: simcc, RTMWHead: simcc, InternetHead: heatmap3d}
    originals = {cls: cls.decode for cls in patched}
    for cls, wrap in patched.items():
        cls.decode = wrap(originals[cls])
    try:
        yield
    finally:
        for cls, decode in originals.items():
            cls.decode = decode


class Compared:
    """How many keypoint coordinates were compared strictly, and how many were
    near-ties left out."""

    def __init__(self):
        self.strict = self.tied = 0

    def check(self, ours_kpts, ours_scores, pred, index: int = 0, score_factor: float = 1.0,
              ref_kpts=None, ref_scores=None) -> np.ndarray:
        """One instance against a reference prediction decoded under
        decoding_margins(). `score_factor` is what both sides' scores were
        multiplied by after decoding. Returns the decided-coordinate mask."""
        ref_kpts = pred.keypoints[index] if ref_kpts is None else ref_kpts
        ref_scores = pred.keypoint_scores[index] if ref_scores is None else ref_scores
        ours_kpts = np.asarray(ours_kpts, dtype=np.float64)
        dims = ours_kpts.shape[-1]
        decided = pred.decode_margin[index][..., :dims] > 2 * REORDER_RTOL
        np.testing.assert_allclose(ours_kpts[decided], np.asarray(ref_kpts)[..., :dims][decided], rtol=0,
                                   atol=COORD_ATOL)
        bound = REORDER_RTOL * pred.decode_scale[index] * score_factor
        moved = np.abs(np.asarray(ours_scores, np.float64) - np.asarray(ref_scores, np.float64))
        assert (moved <= bound).all(), f"scores moved {moved.max():.3g} > bound {bound[moved.argmax()]:.3g}"
        self.strict += int(decided.sum())
        self.tied += int((~decided).sum())
        return decided

    def assert_mostly_strict(self, share: float = 0.8) -> None:
        total = self.strict + self.tied
        assert total and self.strict >= share * total, \
            f"only {self.strict} of {total} coordinates were decided: the comparison checked too little"


def assert_instances_match(instances: list[dict], samples, compared: Compared | None = None) -> Compared:
    """The runner's exported instances against inference_topdown's samples
    (one per box), run under decoding_margins(); counts go into `compared`."""
    assert len(instances) == len(samples)
    compared = compared or Compared()
    for inst, sample in zip(instances, samples):
        compared.check(inst["keypoints"], inst["keypoint_scores"], sample.pred_instances)
    return compared


# -- detectors ----------------------------------------------------------------------
# RTMDet's scores are sigmoids of classification logits (|logit| <= ~10 for
# the fabricated heads, whose logits are tuned to mean -4, std 1.5): a logit
# moves by REORDER_RTOL * 10, a sigmoid (slope <= 1/4) by a quarter of that;
# DET_SCORE_ATOL takes 2x. A box side is exp(regression) * stride: it moves by
# REORDER_RTOL of its length. A box whose score is that close to bbox_thr, or
# whose overlap with a better box is that close to nms_thr, may be kept by one
# run and dropped by the other: such boxes may go unmatched.
DET_SCORE_ATOL = 5e-3
IOU_ATOL = 0.01  # an IoU moves by about 2 * REORDER_RTOL when each side moves by REORDER_RTOL


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:2], b[:, :2]), np.minimum(a[2:4], b[:, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda x: np.prod(x[..., 2:4] - x[..., :2], axis=-1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def match_boxes(ours: np.ndarray, theirs: np.ndarray, bbox_thr: float, nms_thr: float | None) -> list:
    """Pair two runs' kept boxes ((N, 5): xyxy + score) within the float32
    tolerance above; every unpaired box must be one a float-noise difference
    could keep or drop. Returns [(our index, their index)]."""
    ours, theirs = np.asarray(ours, np.float64).reshape(-1, 5), np.asarray(theirs, np.float64).reshape(-1, 5)
    pairs, free = [], set(range(len(theirs)))
    for i in np.argsort(-ours[:, 4]):
        box = ours[i]
        tol = REORDER_RTOL * np.maximum(box[2] - box[0], box[3] - box[1]) + COORD_ATOL
        close = [j for j in free if np.abs(theirs[j, :4] - box[:4]).max() <= tol
                 and abs(theirs[j, 4] - box[4]) <= DET_SCORE_ATOL]
        if close:
            j = min(close, key=lambda j: np.abs(theirs[j, :4] - box[:4]).max())
            pairs.append((int(i), j))
            free.discard(j)
    for boxes, unpaired in ((ours, set(range(len(ours))) - {i for i, _ in pairs}), (theirs, free)):
        for k in unpaired:
            box = boxes[k]
            near_thr = box[4] - bbox_thr <= DET_SCORE_ATOL
            better = np.concatenate([ours, theirs])
            better = better[better[:, 4] > box[4] - DET_SCORE_ATOL]
            near_nms = nms_thr is not None and len(better) and \
                (np.abs(_iou(box, better) - nms_thr) <= IOU_ATOL).any()
            assert near_thr or near_nms, f"box {box.round(2).tolist()} is in one run only, and not by float noise"
    return pairs

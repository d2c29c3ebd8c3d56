"""Scoring predictions against ground truth with MMPose's own metric classes,
so the numbers mean what the papers' numbers mean.

Supported annotation files (COCO style: `images`, `annotations`, `categories`):

| file | keypoints | metric (mmpose.evaluation) | main |
| --- | --- | --- | --- |
| COCO body | 17 | CocoMetric: AP, AP .5, AP .75, AP (M), AP (L), AR, ... | AP |
| COCO-WholeBody | 133 | CocoWholeBodyMetric, per part: body, foot, face, left_hand, right_hand, whole | AP (whole) |
| hands (OneHand10K, FreiHAND, ...) | 21 | PCKAccuracy (thr 0.2, bbox-normalised), AUC, EPE | PCK |
| faces (COCO-WholeBody-Face style) | 68 | NME (normalised by the outer eye corners' distance) | NME |

A body model is scored on the body part of a COCO-WholeBody file, a
whole-body model on a COCO body file by its body keypoints. The metric's
settings come from the pose model config's own `val_evaluator` when it is the
same metric (RTMO: score_mode=bbox, nms_mode=none), MMPose's defaults otherwise.
CrowdPose, MPII and InterHand2.6M files are recognised and refused: no model of
the registry predicts their keypoints."""
from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner import boxes
from runner.coco import ImageIds
from runner.errors import RunnerError
from runner.hashing import sha256_file

SUPPORTED = "COCO body (17 keypoints), COCO-WholeBody (133), COCO-style hand (21) and face (68) files"


@dataclass(frozen=True)
class PerBox:
    """Ground truth scored box by box (each ground-truth box matched to the
    predicted box that overlaps it most), by MMPose's metrics of its kind."""
    keypoints: int           # per annotation, and of the models it scores
    evaluators: tuple        # the defaults; a model config's own of the same types win
    main: str
    when_none_matched: dict  # a job that matched no box: every box a miss (means over matches: none)


PER_BOX = {
    "hand": PerBox(21, ({"type": "PCKAccuracy", "thr": 0.2}, {"type": "AUC"}, {"type": "EPE"}), "PCK",
                   {"PCK": 0.0, "AUC": 0.0}),
    "face": PerBox(68, ({"type": "NME", "norm_mode": "keypoint_distance"},), "NME", {}),
}
PER_BOX_KIND = {row.keypoints: kind for kind, row in PER_BOX.items()}  # an annotation's keypoint count -> its kind
MAIN_METRIC = {"coco": "AP", "coco_wholebody": "AP", **{kind: row.main for kind, row in PER_BOX.items()}}
LOWER_IS_BETTER = {"EPE", "NME"}
WHOLEBODY_PARTS = (("body", "keypoints_body"), ("foot", "keypoints_foot"), ("face", "keypoints_face"),
                   ("left_hand", "keypoints_lefthand"), ("right_hand", "keypoints_righthand"),
                   ("whole", "keypoints_wholebody"))
COCO_STATS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")


@dataclass
class GroundTruth:
    path: Path
    sha256: str
    kind: str                      # "coco", "coco_wholebody", or a PER_BOX kind ("hand", "face")
    data: dict = field(repr=False)
    ids: ImageIds = field(repr=False)

    def match(self, name: str):
        """The ground-truth image id of the input `name`, or None (runner.coco's rule)."""
        return self.ids.of(name)

    def subset(self, image_ids: set) -> dict:
        """The annotation file restricted to `image_ids` (a partial match is
        scored on the matched images only)."""
        data = dict(self.data)
        data["images"] = [im for im in self.data["images"] if im["id"] in image_ids]
        data["annotations"] = [a for a in self.data["annotations"] if a["image_id"] in image_ids]
        return data


def load_ground_truth(path: str | Path) -> GroundTruth:
    path = Path(str(path)).expanduser()
    fix = f"pass eval.ann_file= a COCO-style annotation file ({SUPPORTED})"
    if not path.is_file():
        raise RunnerError(f"annotation file {path} does not exist: {fix}")
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise RunnerError(f"annotation file {path} is not valid JSON ({err}): {fix}") from None
    if isinstance(data, list) and data and isinstance(data[0], dict) and "joints" in data[0]:
        raise RunnerError(f"annotation file {path} is an MPII-style file (16 joints, PCKh): no registry model "
                          f"predicts MPII's joints; scoring supports {SUPPORTED}")
    if not isinstance(data, dict) or not {"images", "annotations"} <= set(data):
        raise RunnerError(f"annotation file {path} is not a COCO-style file (no `images` and `annotations`); "
                          f"scoring supports {SUPPORTED}")
    annotations = [a for a in data["annotations"] if a.get("keypoints")]
    if not annotations:
        raise RunnerError(f"annotation file {path} has no keypoint annotations: {fix}")
    count = len(annotations[0]["keypoints"]) // 3
    if "foot_kpts" in annotations[0]:
        kind = "coco_wholebody"
    elif count == 14 or any("crowdIndex" in im for im in data["images"][:1]):
        raise RunnerError(f"annotation file {path} is a CrowdPose file (14 keypoints): no registry model predicts "
                          f"CrowdPose's head and neck keypoints; scoring supports {SUPPORTED}")
    elif count == 17:
        kind = "coco"
    elif count in PER_BOX_KIND:
        kind = PER_BOX_KIND[count]
    else:
        raise RunnerError(f"annotation file {path} has {count} keypoints per annotation; scoring supports {SUPPORTED}")
    return GroundTruth(path, sha256_file(path), kind, data, ImageIds(data["images"], str(path)))


# -- the metric ---------------------------------------------------------------------

@dataclass(frozen=True)
class MetricSpec:
    """Which MMPose metric scores a run, as plain data (it is part of the cache key)."""
    kind: str                   # the ground truth's kind
    evaluators: tuple           # mmpose evaluator configs (dicts), without ann_file
    dataset: str                # the dataset meta the metric uses (an mmpose _base_ datasets file or a model config)
    body_of_wholebody: bool     # a whole-body model scored by its body keypoints
    topdown_input: tuple | None  # (w, h) of a top-down model: prediction areas as MMPose's pipeline makes them

    @property
    def main(self) -> str:
        return MAIN_METRIC[self.kind]

    def as_key(self) -> dict:
        return {"kind": self.kind, "evaluators": [dict(e) for e in self.evaluators], "dataset": self.dataset,
                "body_of_wholebody": self.body_of_wholebody, "topdown_input": self.topdown_input}


def choose_metric(gt: GroundTruth, pose_entry, family_unit: str) -> MetricSpec:
    """The metric for scoring `pose_entry`'s predictions on `gt` (a registry entry, or
    an ONNX file's with what its file said: num_keypoints, input_size, keypoints)."""
    from runner.models.configs import load_config
    count = int(pose_entry["num_keypoints"])
    config = pose_entry.get("config")
    own = load_config(str(config)).get("val_evaluator") if config else None
    own = [dict(e) for e in (own if isinstance(own, (list, tuple)) else [own] if own else [])]

    def from_model(types: tuple[str, ...], defaults: list[dict]) -> tuple:
        mine = [{k: v for k, v in e.items() if k != "ann_file"} for e in own if e.get("type") in types]
        return tuple(mine if [e["type"] for e in mine] == [e["type"] for e in defaults] else defaults)

    topdown = tuple(int(v) for v in pose_entry["input_size"]) if family_unit == "box" else None
    name = f"{pose_entry['name']} ({count} keypoints)"
    if gt.kind == "coco_wholebody" and count == 133:
        return MetricSpec("coco_wholebody", from_model(("CocoWholeBodyMetric",), [{"type": "CocoWholeBodyMetric"}]),
                          "configs/_base_/datasets/coco_wholebody.py", False, topdown)
    if gt.kind in ("coco", "coco_wholebody") and count in (17, 133):  # the body keypoints
        return MetricSpec("coco", from_model(("CocoMetric",), [{"type": "CocoMetric"}]),
                          "configs/_base_/datasets/coco.py", count == 133, topdown)
    if gt.kind in PER_BOX and count == PER_BOX[gt.kind].keypoints:
        defaults = [dict(e) for e in PER_BOX[gt.kind].evaluators]
        dataset = str(config) if config else f"configs/_base_/datasets/{pose_entry['keypoints']}.py"
        return MetricSpec(gt.kind, from_model(tuple(e["type"] for e in defaults), defaults), dataset, False, topdown)
    raise RunnerError(f"cannot score {name} on {gt.path} ({gt.kind.replace('_', '-')} keypoints): "
                      "use a pose model with the file's keypoints, or another annotation file")


@dataclass
class Prediction:
    """One image's instances, as the export writes them."""
    image_id: int | str
    keypoints: np.ndarray        # (N, K, 2)
    keypoint_scores: np.ndarray  # (N, K)
    boxes: np.ndarray            # (N, 4) xyxy
    box_scores: np.ndarray       # (N,)

    def as_key(self) -> list:
        return [self.image_id, self.keypoints, self.keypoint_scores, self.boxes, self.box_scores]


def score(spec: MetricSpec, gt: GroundTruth, predictions: list[Prediction]) -> dict[str, float]:
    """The metric's values for `predictions`, on the images they cover."""
    from runner.models.loading import quiet_openmmlab
    image_ids = {p.image_id for p in predictions}
    with tempfile.TemporaryDirectory(prefix="pose-runner-eval-") as tmp, quiet_openmmlab(), \
            contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its tables
        ann_file = Path(tmp) / "ground_truth.json"
        ann_file.write_text(json.dumps(gt.subset(image_ids)))
        if spec.kind in PER_BOX:
            return _score_per_box(spec, gt, predictions)
        metric = build_coco_metric(spec, str(ann_file), f"{tmp}/results")
        metric.process([], coco_samples(spec, predictions))
        return {k: float(v) for k, v in metric.compute_metrics(metric.results).items()}


def dataset_meta(spec: MetricSpec) -> dict:
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    if spec.dataset.startswith("configs/_base_/"):
        return parse_pose_metainfo(dict(from_file=spec.dataset))
    from runner.models.loading import dataset_meta as model_meta
    return model_meta(spec.dataset)


def build_coco_metric(spec: MetricSpec, ann_file: str, outfile_prefix: str):
    """The CocoMetric / CocoWholeBodyMetric of `spec` on `ann_file` (what
    tests also build directly, to check that we pass it the right data)."""
    (evaluator,) = spec.evaluators
    options = {k: v for k, v in evaluator.items() if k != "type"}
    if spec.body_of_wholebody:
        options["pred_converter"] = {"num_keypoints": 17, "mapping": [(i, i) for i in range(17)]}
    body, wholebody = coco_metrics()
    cls = body if evaluator["type"] == "CocoMetric" else wholebody
    metric = cls(ann_file=ann_file, outfile_prefix=outfile_prefix, **options)
    metric.dataset_meta = dataset_meta(spec)
    return metric


def coco_samples(spec: MetricSpec, predictions: list[Prediction]) -> list[dict]:
    """One MMPose data sample per predicted instance, as a top-down test loop
    hands them to CocoMetric.process (each its own id: the metric de-duplicates
    instances by id)."""
    samples = []
    for pred in predictions:
        for i in range(len(pred.keypoints)):
            sample = {"id": len(samples), "img_id": pred.image_id, "category_id": 1,
                      "pred_instances": {"keypoints": pred.keypoints[i:i + 1].astype(np.float32),
                                         "keypoint_scores": pred.keypoint_scores[i:i + 1].astype(np.float32),
                                         "bbox_scores": pred.box_scores[i:i + 1].astype(np.float32)},
                      "gt_instances": {}}
            if spec.topdown_input is not None:
                sample["gt_instances"]["bbox_scales"] = topdown_scale(pred.boxes[i], spec.topdown_input)[None]
            samples.append(sample)
    return samples


def topdown_scale(box: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The crop size MMPose's top-down pipeline makes of a box (GetBBoxCenterScale's
    1.25 padding, then TopdownAffine's aspect ratio): CocoMetric takes its area
    as the instance's area."""
    from mmpose.structures.bbox import bbox_xyxy2cs
    _, scale = bbox_xyxy2cs(np.asarray(box, np.float32)[None], padding=1.25)
    w, h = scale[0]
    aspect = input_size[0] / input_size[1]
    return np.array([w, w / aspect] if w > h * aspect else [h * aspect, h], dtype=np.float32)


def _score_per_box(spec: MetricSpec, gt: GroundTruth, predictions: list[Prediction]) -> dict[str, float]:
    """The kind's metrics (hands: PCK / AUC / EPE; faces: NME) per ground-truth
    box, each matched to the predicted box that overlaps it most (IoU >= 0.5,
    one to one); boxes with no match are left out and counted
    (`matched_instances` of `gt_instances`)."""
    from mmpose.registry import METRICS
    samples = box_samples(gt, predictions)
    values: dict[str, float] = {} if samples else dict(PER_BOX[spec.kind].when_none_matched)
    for evaluator in spec.evaluators if samples else ():
        metric = METRICS.build(copy.deepcopy(dict(evaluator)))
        metric.dataset_meta = dataset_meta(spec)
        metric.process([], samples)
        values.update({k: float(v) for k, v in metric.compute_metrics(metric.results).items()})
    values["matched_instances"] = float(len(samples))
    values["gt_instances"] = float(sum(1 for a in gt.data["annotations"] if a["image_id"] in
                                       {p.image_id for p in predictions} and a.get("keypoints")))
    return values


def box_samples(gt: GroundTruth, predictions: list[Prediction]) -> list[dict]:
    """The data samples MMPose's per-box metrics (PCKAccuracy, AUC, EPE, NME)
    take: one per matched ground-truth box, with its keypoints, visibility and
    box (xyxy)."""
    from scipy.optimize import linear_sum_assignment
    by_image: dict = {}
    for ann in gt.data["annotations"]:
        if ann.get("keypoints") and not ann.get("iscrowd"):
            by_image.setdefault(ann["image_id"], []).append(ann)
    samples = []
    for pred in predictions:
        anns = by_image.get(pred.image_id, [])
        if not anns or not len(pred.boxes):
            continue
        gt_boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                             for a in anns], dtype=np.float64)
        iou = boxes.iou(gt_boxes, pred.boxes)
        rows, cols = linear_sum_assignment(-iou)
        for g, p in zip(rows, cols):
            if iou[g, p] < 0.5:
                continue
            kpts = np.array(anns[g]["keypoints"], dtype=np.float32).reshape(-1, 3)
            samples.append({"pred_instances": {"keypoints": pred.keypoints[p:p + 1].astype(np.float32)},
                            "gt_instances": {"keypoints": kpts[None, :, :2],
                                             "keypoints_visible": np.minimum(1, kpts[None, :, 2]),
                                             "bboxes": gt_boxes[g:g + 1].astype(np.float32)}})
    return samples


@functools.cache
def coco_metrics() -> tuple[type, type]:
    """MMPose's CocoMetric and CocoWholeBodyMetric, as they score, but:
    - zero predictions is a result, not a crash (MMPose's compute_metrics unpacks
      an empty list, and xtcocotools' loadRes refuses one): every ground-truth
      instance is a miss, so AP and AR are 0 wherever the file has instances
      (COCOeval's -1 where an area range has none, as with any predictions);
    - the whole-body metric keeps each part's stats: MMPose runs the same
      COCOeval per part but returns only the whole body's.
    (Classes made on first use: mmpose imports torch.)"""
    from mmpose.evaluation.metrics import CocoMetric, CocoWholeBodyMetric
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    def results(coco, path: str):
        """coco.loadRes(path), also for an empty results file."""
        if json.loads(Path(path).read_text()):
            return coco.loadRes(path)
        empty = COCO()
        empty.dataset = {"images": list(coco.dataset["images"]), "annotations": [],
                         "categories": copy.deepcopy(coco.dataset.get("categories", []))}
        empty.createIndex()
        return empty

    def stats(metric, coco_det, iou_type: str, sigmas) -> list[float]:
        coco_eval = COCOeval(metric.coco, coco_det, iou_type, sigmas, use_area=metric.use_area)
        coco_eval.params.useSegm = None
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        return list(coco_eval.stats)

    class NothingFound:
        def compute_metrics(self, results: list) -> dict:
            if results:
                return super().compute_metrics(results)
            Path(f"{self.outfile_prefix}.keypoints.json").write_text("[]")
            return dict(self._do_python_keypoint_eval(self.outfile_prefix))

    class Body(NothingFound, CocoMetric):
        def _do_python_keypoint_eval(self, outfile_prefix: str) -> list:
            coco_det = results(self.coco, f"{outfile_prefix}.keypoints.json")
            return list(zip(COCO_STATS, stats(self, coco_det, self.iou_type, self.dataset_meta["sigmas"])))

    class WholeBodyParts(NothingFound, CocoWholeBodyMetric):
        """The whole body's stats keep MMPose's names (AP, AR, ...); a part's
        are prefixed with its name (body AP, left_hand AR, ...)."""

        def _do_python_keypoint_eval(self, outfile_prefix: str) -> list:
            coco_det = results(self.coco, f"{outfile_prefix}.keypoints.json")
            sigmas = self.dataset_meta["sigmas"]
            cuts = np.cumsum([0, self.body_num, self.foot_num, self.face_num, self.left_hand_num,
                              self.right_hand_num])
            out = []
            for i, (part, iou_type) in enumerate(WHOLEBODY_PARTS):
                part_sigmas = sigmas if part == "whole" else sigmas[cuts[i]:cuts[i + 1]]
                prefix = "" if part == "whole" else f"{part} "
                out += [(f"{prefix}{name}", value) for name, value in
                        zip(COCO_STATS, stats(self, coco_det, iou_type, part_sigmas))]
            return out

    return Body, WholeBodyParts

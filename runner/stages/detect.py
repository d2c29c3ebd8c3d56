"""detect without a model: boxes from the whole image or from a COCO file.
(Model detectors are the `mmdet` family: runner/models/mmdet_detector.py.)"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from runner.coco import ImageIds, item_image_id, numbered_id
from runner.errors import RunnerError
from runner.inputs import BadItem
from runner.stages.base import Record, Stage


class WholeImage(Stage):
    """No detector: the whole image is the one box, with score 1."""
    name = "detect"

    def run(self, records: list[Record]) -> None:
        for record in records:
            if not record.ok:
                continue
            self.stats.units += 1
            try:
                h, w = record.item.image().shape[:2]
            except BadItem as err:
                record.error = str(err)
                continue
            record.boxes = np.array([[0, 0, w, h]], dtype=np.float32)
            record.box_scores = np.ones(1, dtype=np.float32)
            record.notes.append("no detector: the whole image is the box")

    plan = run


class FromFile(Stage):
    """Boxes from a COCO-results detections file (or a COCO annotation file's
    ground-truth boxes: detect/model=gt takes eval.ann_file's), matched to
    inputs by file name or image id. Every entry is checked before any image
    is read, and a file that names none of the inputs is refused.

    An entry with `ground_truth: true` (detect/model=gt) keeps the boxes
    MMPose's top-down test set keeps (BaseCocoStyleDataset): crowd regions,
    annotations without keypoints and boxes empty once clipped to the image
    are left out, the rest clipped to [0, width - 1] x [0, height - 1]."""
    name = "detect"

    def setup(self) -> None:
        self.cfg = self.ctx.cfg.detect
        entry = self.cfg.model
        path = Path(str(entry.path)).expanduser()
        self.source = str(path)
        fix = "pass detect.model.path=FILE (COCO results JSON)"
        data = read_json(path, "detections file", fix)
        images = []
        if isinstance(data, dict):  # {"images": [...], "annotations"/"detections": [...]}
            if not {"annotations", "detections"} & set(data):
                raise RunnerError(f"detections file {path} is a JSON object without `annotations` or `detections`: "
                                  "pass a COCO results list ([{image_id, bbox, score}, ...]) or a COCO file with "
                                  "`images` and `annotations`")
            images = data.get("images") or []
            data = data.get("annotations") or data.get("detections") or []
        if not isinstance(data, list):
            raise RunnerError(f"detections file {path} holds a {type(data).__name__}, not a list of boxes: {fix}")
        if entry.get("annotations_file"):
            images = images + read_json(Path(str(entry.annotations_file)).expanduser(), "annotations file",
                                        "pass detect.model.annotations_file=FILE (COCO JSON)").get("images", [])
        # Inputs find their boxes by the file's own images, else the ground truth's,
        # else (a bare COCO results list) by the numbers in their file names.
        self.ids = ImageIds(images, str(path)) if images else self.ctx.image_ids()
        self.ground_truth = bool(entry.get("ground_truth"))
        self.sizes = {im["id"]: (im["width"], im["height"]) for im in images if "width" in im and "height" in im}
        category = entry.get("category_id")
        self.by_image: dict = {}
        for at, det in enumerate(data):
            checked(det, at, path, self.ground_truth)
            if det.get("iscrowd") or (category is not None and det.get("category_id", category) != category):
                continue  # a crowd region is not a person's box
            if self.ground_truth and not has_keypoints(det):
                continue  # MMPose's top-down test set leaves it out
            self.by_image.setdefault(det["image_id"], []).append(det)
        names = getattr(self.ctx.source, "names", None)
        if names is not None:
            if self.ids is not None:
                self.ids.check(names())
            self._refuse_unnamed(path, {det["image_id"] for det in data}, names())

    def _refuse_unnamed(self, path: Path, named: set, inputs: list[str]) -> None:
        """A file whose boxes are for none of the inputs would give each "no detections"."""
        frames = {str(i).split("#")[0] for i in named if "#" in str(i)}  # a video's frames: "clip.mp4#000012"
        found = [self.ids.of(n) if self.ids is not None else numbered_id(n) for n in inputs]
        if not named or frames & set(inputs) or any(i is not None and (self.ids is not None or i in named)
                                                    for i in found):
            return
        shown = ", ".join(str(i) for i in sorted(named, key=str)[:3]) + (", ..." if len(named) > 3 else "")
        raise RunnerError(f"detections file {path} names none of the {len(inputs)} input(s): its image ids are "
                          f"{shown}; an input's id is its image's in the file's `images` (by file name), else its "
                          "file name's number (000000000785.jpg -> 785): pass the detections of these inputs")

    def run(self, records: list[Record]) -> None:
        thr = float(self.cfg.bbox_thr)
        for record in records:
            if not record.ok:
                continue
            self.stats.units += 1
            image_id = item_image_id(record.item, self.ids)
            # ground-truth boxes (annotations without a score) count as certain
            found = self.by_image.get(image_id, [])
            dets = sorted((d for d in ((d.get("score", 1.0), d["bbox"]) for d in found) if d[0] > thr),
                          key=lambda d: -d[0])
            scores = np.array([score for score, _ in dets], dtype=np.float32)
            if self.ground_truth and dets:
                try:
                    size = self.sizes.get(image_id) or record.item.image().shape[1::-1]
                except BadItem as err:
                    record.error = str(err)
                    continue
                record.boxes, record.box_scores = clipped([bbox for _, bbox in dets], scores, size)
            else:
                xywh = np.array([bbox for _, bbox in dets], dtype=np.float32).reshape(-1, 4)
                record.boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
                record.box_scores = scores
            record.notes.append(f"boxes from {self.source}")

    plan = run


def checked(det, at: int, path: Path, ground_truth: bool) -> None:
    """One line naming an entry of a boxes file that is not a box."""
    where = f"detections file {path}: entry {at}"
    if not isinstance(det, dict):
        raise RunnerError(f"{where} is {_shown(det)}, not a box ({{image_id, bbox: [x, y, width, height], score}})")
    if "image_id" not in det:
        raise RunnerError(f"{where} has no image_id: every box names its image")
    bbox = det.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
        raise RunnerError(f"{where} has bbox {_shown(bbox)}: a box is [x, y, width, height], four finite numbers")
    if not ground_truth and not (bbox[2] > 0 and bbox[3] > 0):  # ground truth: MMPose drops it (clipped)
        raise RunnerError(f"{where} has bbox {_shown(bbox)}: its width and height must be positive (COCO boxes are "
                          "[x, y, width, height], not corners)")
    if not _finite(det.get("score", 1.0)):
        raise RunnerError(f"{where} has score {_shown(det['score'])}: a score is a number")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value) -> str:
    """A value as the file has it (10, not 10.0; strings quoted)."""
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def has_keypoints(ann: dict) -> bool:
    """Whether MMPose's top-down test set makes an instance of an annotation:
    it has keypoints, a num_keypoints that is not 0 (without one: any labelled
    keypoint) and a keypoint coordinate above 0."""
    keypoints = np.asarray(ann.get("keypoints") or [], np.float32).reshape(-1, 3)[:, :2]
    if not len(keypoints):
        return False
    count = ann["num_keypoints"] if "num_keypoints" in ann else np.count_nonzero(keypoints.max(axis=1))
    return count != 0 and keypoints.max() > 0


def clipped(xywh: list, scores: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth boxes ([x, y, w, h]) as corners clipped to an image of
    `size` (w, h), as MMPose's parse_data_info makes them (float64, then
    float32), and those left empty dropped (its _is_valid_instance)."""
    w, h = size
    x, y, bw, bh = np.asarray(xywh, np.float64).reshape(-1, 4).T
    boxes = np.stack([np.clip(x, 0, w - 1), np.clip(y, 0, h - 1), np.clip(x + bw, 0, w - 1),
                      np.clip(y + bh, 0, h - 1)], axis=1).astype(np.float32)
    keep = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    return boxes[keep], scores[keep]


def read_json(path: Path, what: str, fix: str):
    if not path.is_file():
        raise RunnerError(f"{what} {path} does not exist: {fix}")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise RunnerError(f"{what} {path} is not valid JSON ({err}): {fix}") from None

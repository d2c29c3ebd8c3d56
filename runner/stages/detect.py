"""detect without a model: boxes from the whole image or from a COCO file.
(Model detectors are the `mmdet` family: runner/models/mmdet_detector.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runner.coco import ImageIds, item_image_id
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
    inputs by file name or image id."""
    name = "detect"

    def setup(self) -> None:
        self.cfg = self.ctx.cfg.detect
        entry = self.cfg.model
        path = Path(str(entry.path)).expanduser()
        data = read_json(path, "detections file", "pass detect.model.path=FILE (COCO results JSON)")
        images = []
        if isinstance(data, dict):  # {"images": [...], "annotations"/"detections": [...]}
            images = data.get("images", [])
            data = data.get("annotations") or data.get("detections") or []
        if entry.get("annotations_file"):
            images = images + read_json(Path(str(entry.annotations_file)).expanduser(), "annotations file",
                                        "pass detect.model.annotations_file=FILE (COCO JSON)").get("images", [])
        # Inputs find their boxes by the file's own images, else the ground truth's,
        # else (a bare COCO results list) by the numbers in their file names.
        self.ids = ImageIds(images, str(path)) if images else self.ctx.image_ids()
        names = getattr(self.ctx.source, "names", None)
        if self.ids is not None and names is not None:
            self.ids.check(names())
        category = entry.get("category_id")
        self.by_image: dict = {}
        for det in data:
            if det.get("iscrowd") or (category is not None and det.get("category_id", category) != category):
                continue  # a crowd region is not a person's box
            self.by_image.setdefault(det["image_id"], []).append(det)
        self.source = str(path)

    def run(self, records: list[Record]) -> None:
        thr = float(self.cfg.bbox_thr)
        for record in records:
            if not record.ok:
                continue
            self.stats.units += 1
            # ground-truth boxes (annotations without a score) count as certain
            found = self.by_image.get(item_image_id(record.item, self.ids), [])
            dets = sorted((d for d in ((d.get("score", 1.0), d["bbox"]) for d in found) if d[0] > thr),
                          key=lambda d: -d[0])
            xywh = np.array([bbox for _, bbox in dets], dtype=np.float32).reshape(-1, 4)
            record.boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            record.box_scores = np.array([score for score, _ in dets], dtype=np.float32)
            record.notes.append(f"boxes from {self.source}")

    plan = run


def read_json(path: Path, what: str, fix: str):
    if not path.is_file():
        raise RunnerError(f"{what} {path} does not exist: {fix}")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise RunnerError(f"{what} {path} is not valid JSON ({err}): {fix}") from None

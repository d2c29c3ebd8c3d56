"""detect: boxes for each item. A model detector caches its raw output
(every box and score before bbox_thr), so threshold changes never re-run it;
`whole_image` and `from_file` need no model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runner.errors import RunnerError
from runner.inputs import BadItem
from runner.stages.base import ModelStage, Record, Stage, Unit


class Detect(ModelStage):
    """An MMDetection model (RTMDet person / hand)."""
    name = "detect"
    code_version = 1
    libs = ("torch", "mmcv", "mmengine", "mmdet", "cv2", "numpy")

    def setup(self) -> None:
        super().setup()
        self._detector = None

    def units(self, records: list[Record]) -> list[Unit]:
        return [Unit(r, r.item.content_key) for r in records]

    @property
    def detector(self):
        if self._detector is None:
            from runner.models.mmdet_detector import MMDetDetector
            model = self.ctx.load_model("detect")
            self._detector = MMDetDetector(model)
        return self._detector

    def compute(self, units: list[Unit]) -> list[dict[str, np.ndarray]]:
        return self.detector.predict([u.record.item.image() for u in units])

    def attach(self, units: list[Unit], results) -> None:
        from runner.models.mmdet_detector import select_boxes
        for unit, raw in zip(units, results):
            record = unit.record
            record.detections = raw
            record.boxes, record.box_scores = select_boxes(
                raw, self.entry.cat_ids, float(self.cfg.bbox_thr), float(self.cfg.nms_thr))


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
    """Boxes from a COCO-results detections file, matched by file name or id."""
    name = "detect"

    def setup(self) -> None:
        self.cfg = self.ctx.cfg.detect
        entry = self.cfg.model
        path = Path(str(entry.path)).expanduser()
        if not path.is_file():
            raise RunnerError(f"detections file {entry.path} does not exist: "
                              "pass detect.model.path=FILE (COCO results JSON)")
        try:
            data = json.loads(path.read_text())
        except ValueError as err:
            raise RunnerError(f"detections file {path} is not valid JSON ({err}): "
                              "pass a COCO results file") from None
        names = {}
        if isinstance(data, dict):  # {"images": [...], "annotations"/"detections": [...]}
            names = {im["file_name"]: im["id"] for im in data.get("images", [])}
            data = data.get("annotations") or data.get("detections") or []
        if entry.get("annotations_file"):
            images = json.loads(Path(str(entry.annotations_file)).read_text()).get("images", [])
            names.update({im["file_name"]: im["id"] for im in images})
        self.names = names
        category = entry.get("category_id")
        self.by_image: dict = {}
        for det in data:
            if category is not None and det.get("category_id", category) != category:
                continue
            self.by_image.setdefault(det["image_id"], []).append(det)
        self.source = str(path)

    def image_id(self, record: Record):
        name = Path(record.item.source).name
        if name in self.names:
            return self.names[name]
        if name in self.by_image:
            return name
        stem = Path(name).stem
        return int(stem) if stem.isdigit() else stem

    def run(self, records: list[Record]) -> None:
        thr = float(self.cfg.bbox_thr)
        for record in records:
            if not record.ok:
                continue
            self.stats.units += 1
            # ground-truth boxes (annotations without a score) count as certain
            dets = [(d.get("score", 1.0), d["bbox"]) for d in self.by_image.get(self.image_id(record), [])]
            dets = sorted((d for d in dets if d[0] > thr), key=lambda d: -d[0])
            xywh = np.array([bbox for _, bbox in dets], dtype=np.float32).reshape(-1, 4)
            record.boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            record.box_scores = np.array([score for score, _ in dets], dtype=np.float32)
            record.notes.append(f"boxes from {self.source}")

    plan = run

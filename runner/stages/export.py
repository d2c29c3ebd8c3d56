"""export: predictions in MMPoseInferencer's JSON layout (one file per image,
one per video) and one COCO keypoint-results file for the run. Files are
streamed, so memory stays flat however long the video."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from runner.stages.base import Record, Stage

# MMPose's COCO metric rescoring: instance score = bbox score x mean of the
# keypoint scores above this threshold.
RESCORE_KPT_THR = 0.2


def jsonable(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def instances(record: Record, parts: dict | None = None) -> list[dict]:
    """The record's instances as JSON-ready dicts: keypoints, keypoint_scores,
    bbox (flat [x1, y1, x2, y2]), bbox_score, any extra per-family fields, and
    each named part of the keypoints (e.g. a whole body's face, hands) sliced
    out of every per-keypoint field."""
    out = []
    if record.boxes is None:
        return out
    for i, box in enumerate(record.boxes):
        inst: dict = {}
        pose = record.poses[i] if record.poses else None
        if pose is not None:
            inst.update({name: jsonable(value) for name, value in pose.items()})
            count = len(pose["keypoints"])
            per_keypoint = {n: v for n, v in pose.items()
                            if isinstance(v, np.ndarray) and v.ndim and len(v) == count}
            for part, (start, stop) in (parts or {}).items():
                inst[part] = {n: v[start:stop].tolist() for n, v in per_keypoint.items()}
        inst["bbox"] = [float(v) for v in box]
        inst["bbox_score"] = float(record.box_scores[i])
        out.append(inst)
    return out


def record_dict(record: Record, parts: dict | None = None) -> dict:
    """What the API returns for one item (and what the files hold)."""
    item = record.item
    out = {"id": item.id, "source": item.source, "sha256": item.content_key}
    if item.frame_index is not None:
        out["frame_index"] = item.frame_index
    out["instances"] = instances(record, parts) if record.ok else []
    if record.notes:
        out["notes"] = record.notes
    if record.error:
        out["error"] = record.error
    return out


def coco_image_id(item) -> int | str:
    stem = Path(item.source).stem
    if item.frame_index is None:
        return int(stem) if stem.isdigit() else item.id
    return item.id


class JsonArrayWriter:
    """Writes `[a, b, ...]` one element at a time."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.file, self.count = path, open(path, "w"), 0
        self.file.write("[")

    def add(self, value) -> None:
        self.file.write(("," if self.count else "") + "\n" + json.dumps(value))
        self.count += 1

    def close(self) -> None:
        self.file.write("\n]\n")
        self.file.close()


class Export(Stage):
    name = "export"

    def setup(self) -> None:
        self.cfg = self.ctx.cfg.export
        self.parts = self.ctx.parts()
        self.videos: dict[str, JsonArrayWriter] = {}
        self.coco: JsonArrayWriter | None = None
        self.written: list[str] = []

    def run(self, records: list[Record]) -> None:
        start = time.perf_counter()
        out_dir = self.ctx.out_dir
        for record in records:
            self.stats.units += 1
            if not record.ok or out_dir is None:
                continue
            self.stats.computed += 1
            found = instances(record, self.parts)
            if self.cfg.predictions:
                self._predictions(out_dir / "predictions", record, found)
            if self.cfg.coco_results:
                self._coco(out_dir, record, found)
        self.stats.seconds += time.perf_counter() - start

    def plan(self, records: list[Record]) -> None:
        self.stats.units += len(records)

    def _predictions(self, folder: Path, record: Record, found: list[dict]) -> None:
        item = record.item
        if item.frame_index is None:
            path = folder / f"{Path(item.id).with_suffix('')}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(found, indent=2))
            self.written.append(str(path))
            return
        writer = self.videos.get(item.source)
        if writer is None:
            writer = self.videos[item.source] = JsonArrayWriter(folder / f"{Path(item.source).stem}.json")
            self.written.append(str(writer.path))
        writer.add({"frame_id": item.frame_index, "instances": found})

    def _coco(self, out_dir: Path, record: Record, found: list[dict]) -> None:
        if self.coco is None:
            self.coco = JsonArrayWriter(out_dir / "results_coco.json")
            self.written.append(str(self.coco.path))
        for inst in found:
            if "keypoints" not in inst:
                continue
            kpts = np.asarray(inst["keypoints"], dtype=np.float64)[..., :2]
            scores = np.asarray(inst["keypoint_scores"], dtype=np.float64)
            confident = scores[scores > RESCORE_KPT_THR]
            score = inst["bbox_score"] * (confident.mean() if len(confident) else 0.0)
            flat = np.concatenate([kpts, scores[:, None]], axis=1).reshape(-1)
            self.coco.add({"image_id": coco_image_id(record.item), "category_id": 1,
                           "keypoints": [round(float(v), 3) for v in flat], "score": float(score)})

    def finish(self) -> None:
        for writer in self.videos.values():
            writer.close()
        if self.coco is not None:
            self.coco.close()

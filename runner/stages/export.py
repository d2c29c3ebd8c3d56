"""export: predictions in MMPoseInferencer's JSON layout (one file per image,
one per video) and one COCO keypoint-results file for the run. Files are
streamed, so memory stays flat however long the video."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from runner.coco import item_image_id
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
    out of every per-keypoint field; on videos, track_id (the track step) and
    bbox_from ("previous frame": made from the last frame's keypoints, detect.every)."""
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
        if record.track_ids is not None:
            inst["track_id"] = int(record.track_ids[i])
        if record.box_source == "previous frame":
            inst["bbox_from"] = record.box_source
        out.append(inst)
    return out


def keypoint_parts(cfg) -> dict[str, tuple[int, int]]:
    """Named keypoint ranges of the pose model (body, feet, face, hands), if any."""
    model = cfg.pose.model if "pose" in cfg else None
    parts = model.get("parts") if model else None
    return {str(k): (int(v[0]), int(v[1])) for k, v in parts.items()} if parts else {}


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


class JsonArrayWriter:
    """Writes `[a, b, ...]` one element at a time."""

    def __init__(self, path: Path):
        self.path, self.file, self.count = path, open(path, "w"), 0
        self.file.write("[")

    def add(self, value) -> None:
        self.file.write(("," if self.count else "") + "\n" + json.dumps(value, sort_keys=True))
        self.count += 1

    def close(self) -> None:
        self.file.write("\n]\n")
        self.file.close()


class Export(Stage):
    name = "export"

    def setup(self) -> None:
        self.cfg = self.ctx.cfg.export
        self.parts = keypoint_parts(self.ctx.cfg)
        self.videos: dict[str, JsonArrayWriter] = {}
        self.coco: JsonArrayWriter | None = None
        # with ground truth, results_coco.json holds its images, by its ids (what the metrics score)
        self.ids = self.ctx.image_ids()

    def run(self, records: list[Record]) -> None:
        start = time.perf_counter()
        outputs = self.ctx.outputs
        for record in records:
            self.stats.units += 1
            if not record.ok or outputs is None:
                continue
            self.stats.computed += 1
            found = instances(record, self.parts)
            if self.cfg.predictions:
                self._predictions(record, found)
            if self.cfg.coco_results:
                self._coco(record, found)
        self.stats.seconds += time.perf_counter() - start

    def plan(self, records: list[Record]) -> None:
        self.stats.units += len(records)

    def _predictions(self, record: Record, found: list[dict]) -> None:
        item, outputs = record.item, self.ctx.outputs
        if item.frame_index is None:
            # sorted keys: the same bytes whether the poses were computed or came from the cache
            outputs.write("predictions", item.name, "json", json.dumps(found, indent=2, sort_keys=True).encode())
            return
        writer = self.videos.get(item.name)
        if writer is None:
            writer = self.videos[item.name] = JsonArrayWriter(outputs.path("predictions", item.name, "json"))
        writer.add({"frame_id": item.frame_index, "instances": found})

    def _coco(self, record: Record, found: list[dict]) -> None:
        if self.coco is None:
            self.coco = JsonArrayWriter(self.ctx.outputs.root / "results_coco.json")
        image_id = item_image_id(record.item, self.ids)
        if image_id is None:
            return  # not an image of eval.ann_file
        for inst in found:
            if "keypoints" not in inst:
                continue
            kpts = np.asarray(inst["keypoints"], dtype=np.float64)[..., :2]
            scores = np.asarray(inst["keypoint_scores"], dtype=np.float64)
            confident = scores[scores > RESCORE_KPT_THR]
            score = inst["bbox_score"] * (confident.mean() if len(confident) else 0.0)
            flat = np.concatenate([kpts, scores[:, None]], axis=1).reshape(-1)
            self.coco.add({"image_id": image_id, "category_id": 1,
                           "keypoints": [round(float(v), 3) for v in flat], "score": float(score)})

    def finish(self) -> None:
        for writer in self.videos.values():
            writer.close()
        if self.coco is not None:
            self.coco.close()

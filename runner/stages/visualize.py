"""visualize: overlays drawn with MMPose's own visualizer (the dataset's
skeleton and colours). Overlays are cache entries too, keyed by the image, the
instances drawn and the drawing parameters: a re-run only copies them."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import cv2
import numpy as np

from runner.hashing import sha256_bytes, sha256_json
from runner.stages.base import CachedStage, Record, Unit
from runner.versions import versions


def instances_digest(record: Record) -> str:
    h = hashlib.sha256()
    for array in (record.boxes, record.box_scores):
        h.update(np.ascontiguousarray(array).tobytes() if array is not None else b"-")
    for pose in record.poses or []:
        for name in sorted(pose):
            h.update(name.encode() + np.ascontiguousarray(pose[name]).tobytes())
    return h.hexdigest()


class Visualize(CachedStage):
    name = "visualize"
    code_version = 1
    batch_size = 8

    def setup(self) -> None:
        cfg = self.ctx.cfg.visualize
        self.params = {"kpt_thr": float(cfg.kpt_thr), "draw_bbox": bool(cfg.draw_bbox),
                       "radius": int(cfg.radius), "thickness": int(cfg.thickness),
                       "format": str(self.ctx.cfg.output.overlay_ext)}
        self._visualizer = None
        self.writers: dict[str, cv2.VideoWriter] = {}
        self.written: list[str] = []

    def key_parts(self):
        from runner.models.loading import config_digest
        pose = self.ctx.cfg.get("pose", {}).get("model")
        params = sha256_json({**self.params,
                              "dataset": config_digest(str(pose.config)) if pose else None})
        code = sha256_json({"stage": self.name, "version": self.code_version,
                            "libs": versions("mmpose", "mmengine", "cv2", "numpy")})
        return "", params, code

    def units(self, records: list[Record]) -> list[Unit]:
        units = []
        for record in records:
            if record.boxes is None or (record.poses is not None and None in record.poses):
                self.stats.blocked += 1  # dry run: what to draw is not known yet
                continue
            key = sha256_bytes(f"{record.item.content_key}:{instances_digest(record)}".encode())
            units.append(Unit(record, key))
        return units

    # -- drawing -------------------------------------------------------------
    @property
    def visualizer(self):
        if self._visualizer is None:
            from mmpose.visualization import PoseLocalVisualizer
            self._visualizer = PoseLocalVisualizer(
                name=f"pose-runner-{id(self)}", radius=self.params["radius"],
                line_width=self.params["thickness"])
            self._visualizer.set_dataset_meta(self.ctx.dataset_meta(), skeleton_style="mmpose")
        return self._visualizer

    def draw(self, record: Record) -> np.ndarray:
        from mmengine.structures import InstanceData
        from mmpose.structures import PoseDataSample

        image = cv2.cvtColor(record.item.image(), cv2.COLOR_BGR2RGB)
        instances = InstanceData()
        instances.bboxes = record.boxes
        instances.bbox_scores = record.box_scores
        if record.poses:
            instances.keypoints = np.stack([p["keypoints"][..., :2] for p in record.poses])
            instances.keypoint_scores = np.stack([p["keypoint_scores"] for p in record.poses])
        sample = PoseDataSample(pred_instances=instances)
        self.visualizer.add_datasample(
            "overlay", image, data_sample=sample, draw_gt=False, draw_heatmap=False,
            draw_bbox=self.params["draw_bbox"], kpt_thr=self.params["kpt_thr"], show=False)
        return cv2.cvtColor(self.visualizer.get_image(), cv2.COLOR_RGB2BGR)

    def compute(self, units: list[Unit]) -> list[dict[str, np.ndarray]]:
        out = []
        for unit in units:
            ok, encoded = cv2.imencode(f".{self.params['format']}", self.draw(unit.record))
            out.append({"encoded": encoded.reshape(-1)})
        return out

    def attach(self, units: list[Unit], results) -> None:
        for unit, result in zip(units, results):
            unit.record.overlay = result["encoded"].tobytes()

    # -- files ---------------------------------------------------------------
    def run(self, records: list[Record]) -> None:
        super().run(records)
        if self.ctx.out_dir is None:
            return
        start = time.perf_counter()
        folder = self.ctx.out_dir / "overlays"
        folder.mkdir(parents=True, exist_ok=True)
        for record in records:
            if record.overlay is None:
                continue
            item = record.item
            if item.frame_index is None:
                path = folder / f"{Path(item.id).with_suffix('')}.{self.params['format']}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(record.overlay)
                self.written.append(str(path))
            else:
                self._video_frame(folder, record)
        self.stats.seconds += time.perf_counter() - start

    def _video_frame(self, folder: Path, record: Record) -> None:
        frame = cv2.imdecode(np.frombuffer(record.overlay, np.uint8), cv2.IMREAD_COLOR)
        source = record.item.source
        writer = self.writers.get(source)
        if writer is None:
            path = folder / f"{Path(source).stem}.mp4"
            fourcc = cv2.VideoWriter_fourcc(*str(self.ctx.cfg.output.video_fourcc))
            writer = cv2.VideoWriter(str(path), fourcc, self.ctx.fps(source),
                                     (frame.shape[1], frame.shape[0]))
            self.writers[source] = writer
            self.written.append(str(path))
        writer.write(frame)

    def finish(self) -> None:
        for writer in self.writers.values():
            writer.release()
        self.writers.clear()

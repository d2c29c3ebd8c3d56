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
    code_version = 2  # 2: the 3D plot's axis limit grows to fit every joint
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
                            "libs": versions("mmpose", "mmengine", "cv2", "numpy", "matplotlib")})
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
        """The visualizer the pose model's config names (2D, or 3D for InterNet),
        with the dataset's skeleton and colours."""
        if self._visualizer is None:
            from mmengine.registry import DefaultScope
            from mmpose.registry import VISUALIZERS
            from runner.models.loading import load_config
            pose = self.ctx.cfg.get("pose", {}).get("model")
            spec = dict(load_config(str(pose.config)).get("visualizer", {})) if pose else {}
            spec.update(type=spec.get("type", "PoseLocalVisualizer"), name=f"pose-runner-{id(self)}",
                        vis_backends=None, radius=self.params["radius"],
                        line_width=self.params["thickness"])
            with DefaultScope.overwrite_default_scope("mmpose"):
                self._visualizer = VISUALIZERS.build(spec)
            self._visualizer.set_dataset_meta(self.ctx.dataset_meta(), skeleton_style="mmpose")
        return self._visualizer

    def draw(self, record: Record) -> np.ndarray:
        from mmengine.structures import InstanceData
        from mmpose.structures import PoseDataSample

        image = cv2.cvtColor(record.item.image(), cv2.COLOR_BGR2RGB)
        flat = InstanceData(bboxes=record.boxes, bbox_scores=record.box_scores)
        if record.poses:
            flat.keypoints = np.stack([p["keypoints"][..., :2] for p in record.poses])
            flat.keypoint_scores = np.stack([p["keypoint_scores"] for p in record.poses])
        options = dict(draw_gt=False, draw_bbox=self.params["draw_bbox"],
                       kpt_thr=self.params["kpt_thr"], show=False)
        if record.poses and "keypoints_3d" in record.poses[0]:
            # InterNet: the 2D projection on the image beside a 3D plot (mm), as
            # MMPose's hand3d demo draws it: z up, lowest joint on the floor.
            up = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
            kpts = np.stack([p["keypoints_3d"] for p in record.poses]) @ up
            visible = flat.keypoint_scores >= self.params["kpt_thr"]
            limit = 200.0  # mm, the demo's view: one hand fills it
            if visible.any():
                kpts[..., 2] -= kpts[visible][..., 2].min()
                spread = np.ptp(kpts[visible], axis=0).max()
                limit = max(limit, float(spread) * 1.1)  # never crop joints out of the plot
            solid = InstanceData(keypoints=kpts, keypoint_scores=flat.keypoint_scores)
            return cv2.cvtColor(self._image_and_3d_plot(image, flat, solid, limit), cv2.COLOR_RGB2BGR)
        self.visualizer.add_datasample(
            "overlay", image, data_sample=PoseDataSample(pred_instances=flat),
            draw_heatmap=False, **options)
        return cv2.cvtColor(self.visualizer.get_image(), cv2.COLOR_RGB2BGR)

    def _image_and_3d_plot(self, image: np.ndarray, flat, solid, limit: float) -> np.ndarray:
        """Pose3dLocalVisualizer.add_datasample's layout, drawn with its own
        helpers because add_datasample drops kpt_thr for the 3D plot (it is
        always 0.3 there)."""
        from mmpose.structures import PoseDataSample
        vis, thr = self.visualizer, self.params["kpt_thr"]
        if "keypoints" in flat:
            image = vis._draw_instances_kpts(image.copy(), flat, kpt_thr=thr, skeleton_style="mmpose")[0]
        if self.params["draw_bbox"]:
            image = vis._draw_instances_bbox(image, flat)
        plot = vis._draw_3d_data_samples(image, PoseDataSample(pred_instances=solid), draw_gt=False,
                                         kpt_thr=thr, axis_azimuth=-115, axis_limit=limit, axis_elev=15)
        height = max(image.shape[0], plot.shape[0])
        pad = lambda im: cv2.copyMakeBorder(im, 0, height - im.shape[0], 0, 0, cv2.BORDER_CONSTANT,
                                            value=(255, 255, 255))
        return np.concatenate([pad(image), pad(plot)], axis=1)

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

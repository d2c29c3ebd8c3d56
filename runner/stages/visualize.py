"""visualize: overlays with the keypoint set's skeleton and colours, drawn as
MMPose's visualizer draws them (runner/native/draw.py, OpenCV, no torch);
InterNet's 3D plot beside the image by MMPose's 3D visualizer itself.
Overlays are cache entries too, keyed by the image, the instances drawn and
the drawing parameters: a re-run only copies them."""
from __future__ import annotations

import os
import sys
import time

import cv2
import numpy as np

from runner.console import quiet_stderr
from runner.errors import RunnerError
from runner.stages.base import CachedStage, Record, Unit
from runner.stages.reads import FileRead, Reads


def drawn(record: Record) -> dict:
    """What an overlay shows, as plain data: the boxes, their track ids and
    every instance's fields (InterNet's include strings and a dict of flags)."""
    return {"boxes": record.boxes, "box_scores": record.box_scores, "poses": record.poses or [],
            "tracks": record.track_ids}


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour per track id (golden-ratio hues)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 180)
    return tuple(int(c) for c in cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0])


def draw_tracks(image: np.ndarray, record: Record, draw_bbox: bool = True) -> np.ndarray:
    """Each tracked person's id (and box, unless visualize.draw_bbox=false) in the track's colour."""
    for box, track_id in zip(record.boxes, record.track_ids):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        colour = track_colour(track_id)
        if draw_bbox:
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(image, f"#{track_id}", (x1 + 3, max(y1 - 6, 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2,
                    cv2.LINE_AA)
    return image


def check_fourcc(code: str) -> None:
    """One line, before any image is read, when this OpenCV cannot write an
    .mp4 with the FourCC `code` (its VideoWriter would not open, silently)."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="pose-runner-fourcc-") as folder, quiet_stderr():
        writer = cv2.VideoWriter(os.path.join(folder, "probe.mp4"), cv2.VideoWriter_fourcc(*code), 25.0, (16, 16))
        opened = writer.isOpened()
        writer.release()
    if not opened:
        raise RunnerError(f"output.video_fourcc={code}: this OpenCV cannot write an .mp4 video with it: pass "
                          "output.video_fourcc=mp4v (MPEG-4, the default)")


class Visualize(CachedStage):
    name = "visualize"
    # 2: the 3D plot's axis limit grows to fit every joint; 3: track colours; 4: draw_bbox on tracks;
    # 5: 2D overlays drawn by runner/native/draw.py, keypoints below kpt_thr left out; video frames not cached
    code_version = 5
    batch_size = 8
    computes_with = ("runner.inputs", "runner.stages.reads")  # input decoding; what goes into its keys

    def setup(self) -> None:
        cfg = self.ctx.cfg.visualize
        self.params = {"kpt_thr": float(cfg.kpt_thr), "draw_bbox": bool(cfg.draw_bbox),
                       "radius": int(cfg.radius), "thickness": int(cfg.thickness),
                       "format": str(self.ctx.cfg.output.overlay_ext)}
        self.has_poses = "pose" in self.ctx.steps
        pose = self.ctx.model_facts("pose") if self.has_poses else {}  # what its model file said of itself too
        self.pose_config = str(pose["config"]) if pose.get("config") else None
        self.keypoints = str(pose["keypoints"]) if pose.get("keypoints") else None
        self._visualizer = None
        self.writers: dict[str, cv2.VideoWriter | None] = {}  # None: it could not be opened (its first frame says so)
        self.preview: bool | None = None  # show=true: decided at the first frame
        if self.ctx.outputs is not None and self.ctx.source is not None and self.ctx.source.has_videos:
            check_fourcc(str(self.ctx.cfg.output.video_fourcc))

    def reads(self) -> Reads:
        """The drawing parameters; the keypoint set's file (skeleton and colours);
        InterNet's 3D plot: MMPose's visualizer, set up from the model config."""
        files = {}
        if self.keypoints is not None:
            from runner.native.keypoints import set_file
            path = set_file(self.keypoints)
            files["keypoint set"] = FileRead(str(path), self.ctx.hasher.sha256(path))
        libs: tuple[str, ...] = ("cv2", "numpy")
        if self.keypoints == "interhand3d":  # the 3D plot is MMPose's, drawn with matplotlib
            from runner.models.configs import config_identity
            files["model config"] = FileRead(self.pose_config, config_identity(self.pose_config))
            libs += ("mmpose", "matplotlib")
        return Reads(files, {**self.params, "keypoints": self.keypoints}, (Visualize,), libs)

    def accepts(self, record: Record) -> bool:
        """Images' overlays are cache entries; a video frame's is drawn straight
        into its video (it is decoded anyway: a cached JPEG would cost an encode,
        a decode and a second lossy step)."""
        return record.item.frame_index is None and self._drawable(record)

    def _drawable(self, record: Record) -> bool:
        return record.boxes is not None and (not self.has_poses or record.poses_known())

    def units(self, records: list[Record]) -> list[Unit]:
        return [Unit(r, {"item": r.item.content_key, "drawn": drawn(r)}) for r in records]

    # -- drawing -------------------------------------------------------------
    @property
    def visualizer(self):
        """MMPose's 3D visualizer (InterNet's config names it), with the dataset's skeleton and colours."""
        if self._visualizer is None:
            from mmengine.registry import DefaultScope
            from mmpose.registry import VISUALIZERS
            from runner.models.configs import load_config
            from runner.models.loading import dataset_meta
            spec = dict(load_config(self.pose_config).get("visualizer", {})) if self.pose_config else {}
            spec.update(type=spec.get("type", "PoseLocalVisualizer"), name=f"pose-runner-{id(self)}",
                        vis_backends=None, radius=self.params["radius"],
                        line_width=self.params["thickness"])
            with DefaultScope.overwrite_default_scope("mmpose"):
                self._visualizer = VISUALIZERS.build(spec)
            self._visualizer.set_dataset_meta(dataset_meta(self.pose_config), skeleton_style="mmpose")
        return self._visualizer

    def draw(self, record: Record) -> np.ndarray:
        if record.poses and "keypoints_3d" in record.poses[0]:
            return self._draw_3d(record)
        from runner.native.draw import draw_poses
        from runner.native.keypoints import for_count
        poses = record.poses or []
        keypoints = for_count(len(poses[0]["keypoints"]), self.keypoints) if poses else None
        tracked = record.track_ids is not None  # the track boxes, in their colours, replace the green ones
        drawing = draw_poses(record.item.image(), record.boxes, poses, keypoints, self.params["kpt_thr"],
                             self.params["radius"], self.params["thickness"], self.params["draw_bbox"] and not tracked)
        return draw_tracks(drawing, record, self.params["draw_bbox"]) if tracked else drawing

    def _draw_3d(self, record: Record) -> np.ndarray:
        """InterNet: the 2D projection on the image beside a 3D plot (mm), as
        MMPose's hand3d demo draws it: z up, lowest joint on the floor."""
        from mmengine.structures import InstanceData
        image = cv2.cvtColor(record.item.image(), cv2.COLOR_BGR2RGB)
        flat = InstanceData(bboxes=record.boxes, bbox_scores=record.box_scores)
        flat.keypoints = np.stack([p["keypoints"][..., :2] for p in record.poses])
        flat.keypoint_scores = np.stack([p["keypoint_scores"] for p in record.poses])
        flat.keypoints_visible = flat.keypoint_scores
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
        if self.ctx.outputs is None:
            return
        start = time.perf_counter()
        for record in records:
            if record.item.frame_index is not None and record.ok and self._drawable(record):
                self.stats.units += 1
                self.stats.computed += 1
                self._video_frame(record, self.draw(record))
            elif record.overlay is not None:
                self.ctx.outputs.write("overlays", record.item.name, self.params["format"], record.overlay)
        self.stats.seconds += time.perf_counter() - start

    def plan(self, records: list[Record]) -> None:
        super().plan(records)
        self.stats.units += sum(1 for r in records if r.item.frame_index is not None and r.ok)

    def _show(self, name: str, frame: np.ndarray) -> None:
        """show=true: the overlay in a window, when there is a display to show it on."""
        if self.preview is None:
            self.preview = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or \
                sys.platform in ("darwin", "win32")
            if not self.preview:
                print("show=true: no display here (DISPLAY is not set), so no preview window; results are still "
                      "written", file=sys.stderr)
        if self.preview:
            try:
                cv2.imshow(f"pose-runner: {name}", frame)
                cv2.waitKey(1)
            except cv2.error as err:
                self.preview = False
                print(f"show=true: OpenCV cannot open a window ({str(err).strip().splitlines()[-1]}); results are "
                      "still written", file=sys.stderr)

    def _video_frame(self, record: Record, frame: np.ndarray) -> None:
        if self.ctx.cfg.show:
            self._show(record.item.name, frame)
        name = record.item.name
        if name not in self.writers:
            path = self.ctx.outputs.path("overlays", name, "mp4")
            code = str(self.ctx.cfg.output.video_fourcc)
            with quiet_stderr():
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*code), record.item.fps,
                                         (frame.shape[1], frame.shape[0]))
            self.writers[name] = writer if writer.isOpened() else None
            if self.writers[name] is None:  # its codec was checked at set-up: the file itself
                record.error = (f"cannot write the overlay video {path} (OpenCV's VideoWriter, FourCC {code}, did not "
                                "open it): check the folder and the disk; its other outputs are written")
        if self.writers[name] is not None:
            self.writers[name].write(frame)

    def finish(self) -> None:
        super().finish()
        for writer in self.writers.values():
            if writer is not None:
                writer.release()
        self.writers.clear()
        if self.preview:
            cv2.destroyAllWindows()

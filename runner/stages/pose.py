"""pose: keypoints. Top-down models run once per (item, box), cached per box,
so a lower bbox_thr only computes the boxes not seen before."""
from __future__ import annotations

import numpy as np

from runner.hashing import sha256_bytes
from runner.stages.base import ModelStage, Record, Unit

ASSUMED_ROOT_DEPTH_MM = 1000.0


class PoseStage(ModelStage):
    """What every pose family shares: its checkpoint, config and library versions
    make the key; the model is loaded only when something must be computed."""
    name = "pose"
    code_version = 1
    libs = ("torch", "mmcv", "mmengine", "mmpose", "cv2", "numpy")

    def setup(self) -> None:
        super().setup()
        self._estimator = None

    def code_parts(self) -> dict:
        return {**super().code_parts(), "family": str(self.entry.family)}

    @property
    def estimator(self):
        if self._estimator is None:
            self._estimator = self.make_estimator(self.ctx.load_model("pose"))
        return self._estimator

    def make_estimator(self, model):
        raise NotImplementedError


class TopdownPose(PoseStage):
    """RTMPose (body, hand), RTMW, DWPose: one crop per kept box."""

    def make_estimator(self, model):
        from runner.models.topdown import TopdownEstimator
        return TopdownEstimator(model)

    def units(self, records: list[Record]) -> list[Unit]:
        units = []
        for record in records:
            if record.boxes is None:
                self.stats.blocked += 1  # dry run: its boxes are not known yet
                continue
            record.poses = [None] * len(record.boxes)
            for index, box in enumerate(record.boxes):
                box = np.ascontiguousarray(box, dtype=np.float32)
                key = sha256_bytes(record.item.content_key.encode() + box.tobytes())
                units.append(Unit(record, key, (index, box)))
        return units

    def compute(self, units: list[Unit]) -> list[dict[str, np.ndarray]]:
        return self.estimator.predict([(u.record.item.image(), u.payload[1]) for u in units])

    def attach(self, units: list[Unit], results) -> None:
        for unit, result in zip(units, results):
            unit.record.poses[unit.payload[0]] = result


class BottomupPose(PoseStage):
    """RTMO: one unit per image; the model finds the people itself. Its raw
    instances are cached; detect.bbox_thr filters them by box score afterwards
    (as MMPoseInferencer's bbox_thr does), without re-running the model."""

    def make_estimator(self, model):
        from runner.models.rtmo import BottomupEstimator
        return BottomupEstimator(model)

    def units(self, records: list[Record]) -> list[Unit]:
        return [Unit(r, r.item.content_key) for r in records]

    def compute(self, units: list[Unit]) -> list[dict[str, np.ndarray]]:
        return self.estimator.predict([u.record.item.image() for u in units])

    def attach(self, units: list[Unit], results) -> None:
        thr = float(self.ctx.cfg.detect.bbox_thr)
        for unit, raw in zip(units, results):
            keep = raw["bbox_scores"] > thr
            record = unit.record
            record.boxes, record.box_scores = raw["bboxes"][keep], raw["bbox_scores"][keep]
            record.poses = [{"keypoints": k, "keypoint_scores": s} for k, s in
                            zip(raw["keypoints"][keep], raw["keypoint_scores"][keep])]


class Hand3DPose(TopdownPose):
    """InterNet: one crop per box (by default the whole image). The raw 2.5D
    output is cached; camera-space coordinates are derived from it with
    pose.camera, so changing the camera never re-runs the model."""

    def make_estimator(self, model):
        from runner.models.internet import Hand3DEstimator
        return Hand3DEstimator(model)

    def attach(self, units: list[Unit], results) -> None:
        from runner.models.internet import to_camera
        for unit, raw in zip(units, results):
            record = unit.record
            focal, centre, right, left, assumed = self.camera(record)
            pose = to_camera(raw, focal, centre, right, left)
            record.poses[unit.payload[0]] = pose
            if assumed and assumed not in record.notes:
                record.notes.append(assumed)

    def camera(self, record: Record):
        """pose.camera, with what is not given assumed (and said so in a note):
        principal point at the image centre, focal length = the image's longer
        side (about 53 degrees of view), right hand root 1 m from the camera."""
        cam = self.ctx.cfg.pose.get("camera") or {}
        focal, centre, depth = cam.get("focal"), cam.get("principal_point"), cam.get("root_depth")
        assumed = []
        if focal is None or centre is None:
            h, w = record.item.image().shape[:2]
            if focal is None:
                focal = [float(max(h, w))] * 2
                assumed.append(f"focal={focal[0]:g} px")
            if centre is None:
                centre = [w / 2, h / 2]
                assumed.append(f"principal point=({centre[0]:g}, {centre[1]:g})")
        if depth is None:
            depth = [ASSUMED_ROOT_DEPTH_MM]
            assumed.append(f"right root depth={ASSUMED_ROOT_DEPTH_MM:g} mm")
        depth = [float(depth)] if isinstance(depth, (int, float)) else [float(d) for d in depth]
        note = ("keypoints_3d assume a camera (" + ", ".join(assumed) + "): set pose.camera.focal, "
                ".principal_point and .root_depth for metric coordinates") if assumed else ""
        return focal, centre, depth[0], (depth[1] if len(depth) > 1 else None), note

"""pose: keypoints. Top-down models run once per (item, box), cached per box,
so a lower bbox_thr only computes the boxes not seen before."""
from __future__ import annotations

import numpy as np

from runner.hashing import sha256_bytes, sha256_json
from runner.stages.base import CachedStage, Record, Unit
from runner.versions import versions


class PoseStage(CachedStage):
    """What every pose family shares: its checkpoint, config and library versions
    make the key; the model is loaded only when something must be computed."""
    name = "pose"
    code_version = 1
    libs = ("torch", "mmcv", "mmengine", "mmpose", "cv2", "numpy")

    def setup(self) -> None:
        self.cfg = self.ctx.cfg.pose
        self.entry = self.cfg.model
        self.batch_size = int(self.cfg.batch_size)
        self._estimator = None

    def label(self) -> str:
        return str(self.entry.name)

    def key_parts(self):
        from runner.models.loading import config_digest
        checkpoint = self.ctx.checkpoint("pose")
        params = sha256_json({"config": config_digest(str(self.entry.config))})
        code = sha256_json({"stage": self.name, "family": str(self.entry.family),
                            "version": self.code_version, "backend": self.ctx.backend("pose"),
                            "libs": versions(*self.libs)})
        return checkpoint.sha256 if checkpoint else "", params, code

    def ready(self) -> str | None:
        return None if self.ctx.checkpoint("pose") else "checkpoint not downloaded yet"

    def load_model(self):
        from runner.models.loading import load_mmpose_model
        return load_mmpose_model(str(self.entry.config), str(self.ctx.checkpoint("pose").path),
                                 self.ctx.device)

    @property
    def estimator(self):
        if self._estimator is None:
            self._estimator = self.make_estimator(self.load_model())
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

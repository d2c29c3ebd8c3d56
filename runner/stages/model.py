"""The cached stage that runs a model family's estimator (detect, pose): one
unit of work per image or per box, as the family says; which engine runs the
model and what its keys hold is runner/engines.py's to say."""
from __future__ import annotations

import numpy as np

from runner.stages.base import CachedStage, Record, Unit


class ModelStage(CachedStage):
    """detect or pose with a model family's estimator: which engine runs it
    and what its keys hold is runner/engines.py's to say. `self.name` is also
    the config section and the model's role."""

    def __init__(self, ctx, name: str, row):
        super().__init__(ctx)
        self.name = name
        self.row = row

    def setup(self) -> None:
        from runner.engines import engine_for
        self.cfg = self.ctx.cfg[self.name]
        self.entry = self.cfg.model
        self.batch_size = int(self.cfg.batch_size)
        self.engine = engine_for(self.ctx, self.name, self.row)
        checked = getattr(self.engine.estimator_cls, "check_config", None)
        if checked is not None:  # values only this family refuses, before any image is read
            checked(self.ctx.cfg)
        checkpoint = self.ctx.checkpoint(self.name)
        if checkpoint is None:
            return
        if self.row.onnx_file:
            self.ctx.learned[self.name] = self.estimator.facts()  # checked before any image is read
        elif self.may_compute():  # a merge computes nothing: the shards checked it
            from runner.models.fit import check_fits
            check_fits(str(checkpoint.path), checkpoint.sha256, str(self.entry.config), self.row.reference.library,
                       self.engine.owner, self.ctx.hasher.memo_dir, self.entry, self.name)

    def label(self) -> str:
        return str(self.entry.name)

    def accepts(self, record: Record) -> bool:
        if self.row.makes_boxes:  # detect.every: boxes made from the previous frame need no detector
            return record.boxes is None and record.box_source != "pending"
        return self.row.unit == "image" or record.boxes is not None

    def waits(self, record: Record) -> bool:
        return record.box_source == "pending" if self.row.makes_boxes else not self.accepts(record)

    def units(self, records: list[Record]) -> list[Unit]:
        """Per image, or per box; a box's rotation too where the record has one
        and the estimator takes it (MediaPipe's hand model on a palm's region)."""
        if self.row.unit == "image":
            return [Unit(r, r.item.content_key) for r in records]
        rotated = getattr(self.engine.estimator_cls, "takes_angles", False)
        return [Unit(r, (r.item.content_key, np.ascontiguousarray(box, dtype=np.float32),
                         *((float(r.box_angles[i]),) if rotated and r.box_angles is not None else ())), slot=i)
                for r in records for i, box in enumerate(r.boxes)]

    def reads(self):
        return self.engine.reads(self.ctx.checkpoint(self.name))

    def ready(self) -> str | None:
        return None if self.ctx.checkpoint(self.name) else "checkpoint not downloaded yet"

    def may_compute(self) -> bool:
        return not self.ctx.cfg.cache.no_models

    @property
    def estimator(self):
        """The engine's estimator (built only when something must be computed or described)."""
        return self.engine.estimator(self.ctx.checkpoint(self.name))

    def compute(self, units: list[Unit]) -> list[dict[str, np.ndarray]]:
        if self.row.unit == "image":
            return self.estimator.predict([u.record.item.image() for u in units])
        return self.estimator.predict([(u.record.item.image(), *u.input[1:]) for u in units])

    def invalid(self, result) -> str | None:
        """A model output with NaN or infinity (weights or a description that do not
        fit the network, a division by a std of 0) is no result."""
        bad = sorted(name for name, value in result.items()
                     if value.dtype.kind == "f" and not np.isfinite(value).all())
        if not bad:
            return None
        return (f"the model {self.entry.name} gave NaN or infinite {', '.join(bad)}: its weights or its description "
                f"(mean, std, input size, split ratio) do not fit it; the result is not kept")

    def attach(self, units: list[Unit], results) -> None:
        attach = (self.row.reference or self.row.native).attach
        for unit, raw in zip(units, results):
            attach(unit.record, unit.slot, raw, self.ctx.cfg)

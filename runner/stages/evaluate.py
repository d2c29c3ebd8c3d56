"""evaluate: score the run's predictions against `eval.ann_file` with MMPose's
own metrics (runner.evaluation). It runs whenever eval.ann_file is set, after
the last item. Its result is a cache entry keyed by the predictions it scores,
the ground-truth file and the metric, so a re-run costs nothing."""
from __future__ import annotations

import time

import numpy as np

from runner import atomic
from runner.cache import EntryKey
from runner.errors import RunnerError
from runner.evaluation import LOWER_IS_BETTER, Prediction, choose_metric, score
from runner.stages.base import Record, Stage
from runner.stages.reads import FileRead, Reads


def prediction(record: Record, image_id) -> Prediction:
    poses = record.poses or []
    count = len(record.boxes)
    k = poses[0]["keypoints"].shape[0] if poses else 0
    return Prediction(
        image_id,
        np.stack([p["keypoints"][..., :2] for p in poses]).astype(np.float32) if poses else np.zeros((0, k, 2)),
        np.stack([p["keypoint_scores"] for p in poses]).astype(np.float32) if poses else np.zeros((0, k)),
        np.asarray(record.boxes, np.float32).reshape(count, 4),
        np.asarray(record.box_scores, np.float32).reshape(count))


class Evaluate(Stage):
    name = "evaluate"
    code_version = 1
    libs = ("mmpose", "xtcocotools", "numpy", "scipy")
    computes_with = ("runner.coco", "runner.stages.reads")  # image ids; what goes into its key
    result: dict | None = None

    def setup(self) -> None:
        self.gt = self.ctx.ground_truth()
        unit = self.ctx.unit("pose")
        self.spec = choose_metric(self.gt, self.ctx.model_facts("pose"), unit)
        self.predictions: list[Prediction] = []
        self.unmatched: list[str] = []
        self.waiting = 0
        self.inputs = 0
        names = getattr(self.ctx.source, "names", None)
        if names is not None:
            self.gt.ids.check(names())
            if not any(self.gt.match(n) is not None for n in names()):
                raise RunnerError(f"eval.ann_file {self.gt.path} matches none of the {len(names())} input(s) by file "
                                  f"name (it names {len(self.gt.ids)} images, e.g. {self.gt.ids.example()}): pass "
                                  "the annotation file of these images")

    def run(self, records: list[Record]) -> None:
        for record in records:
            if not record.ok:
                continue
            self.inputs += 1
            image_id = self.gt.match(record.item.name) if record.item.frame_index is None else None
            if image_id is None:
                self.unmatched.append(record.item.id)
            elif not record.poses_known():
                self.waiting += 1  # dry run: an upstream stage has not computed it yet
            else:
                self.predictions.append(prediction(record, image_id))

    plan = run

    def end(self) -> None:
        start = time.perf_counter()
        try:
            self._evaluate()
        finally:
            self.stats.seconds += time.perf_counter() - start

    def _evaluate(self) -> None:
        self.stats.units = 1
        if self.waiting:
            self.stats.blocked = self.waiting
            self.stats.reasons["waits for an earlier stage"] += 1
            return
        if not self.predictions:  # a shard's share, or a dry run's, may hold no annotated input
            self.result = {**self._describe(), "values": {},
                           "note": "no input of this run is in the ground truth (its annotated inputs are another "
                                   "shard's, or could not be read): nothing scored"}
            self._write()
            return
        key = EntryKey.of(self.name, [p.as_key() for p in self.predictions], **self.reads().key_parts())
        store = self.ctx.store
        found = None if self.ctx.refresh else store.get(key)
        if self.ctx.dry_run:
            if found is None:
                self.stats.reasons["refresh" if self.ctx.refresh else store.explain_miss(key)] += 1
            else:
                self.stats.hits = 1
            return
        if found is None:
            values = score(self.spec, self.gt, self.predictions)
            store.put(key, {k: np.array(v, np.float64) for k, v in values.items()}, label=self.spec.kind)
            self.stats.computed = 1
        else:
            values = {k: float(v) for k, v in found.items()}
            self.stats.hits = 1
        self.result = {**self._describe(), "values": values}
        self._write()

    def reads(self) -> Reads:
        """The ground truth's file and the metric (its settings: the pose model config's val_evaluator)."""
        return Reads({"ground truth": FileRead(str(self.gt.path), self.gt.sha256)}, {"metric": self.spec.as_key()},
                     (Evaluate,), self.libs)

    def manifest_reads(self) -> dict | None:
        return self.reads().as_manifest() if getattr(self, "spec", None) is not None else None

    def _describe(self) -> dict:
        return {"ann_file": str(self.gt.path), "kind": self.spec.kind,
                "metric": [e["type"] for e in self.spec.evaluators], "main": self.spec.main,
                "higher_is_better": self.spec.main not in LOWER_IS_BETTER,
                "images": {"inputs": self.inputs, "matched": len(self.predictions), "ground_truth": len(self.gt.ids),
                           "unmatched": self.unmatched[:20]}}

    def _write(self) -> None:
        if self.ctx.outputs is not None:
            atomic.write_json(self.ctx.outputs.root / "metrics.json", self.result, indent=2, sort_keys=True)

    def manifest_fields(self) -> dict:
        return {"metrics": self.result} if self.result else {}

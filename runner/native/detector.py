"""Detectors on the native engine: the image letterboxed as MMDetection does,
the network on ONNX Runtime or OpenVINO, and its boxes decoded: RTMDet's raw
head (the runner's own exports: decoding and NMS here, as MMDetection's
head does them) or an MMDeploy end2end file (dets and labels; NMS inside)."""
from __future__ import annotations

import numpy as np

from runner.blame import each_input
from runner.errors import RunnerError
from runner.native import COMPUTES_WITH
from runner.models.mmdet_detector import Detector
from runner.native.decode import rtmdet_boxes
from runner.native.describe import DetectorModel
from runner.native.preprocess import letterbox, normalize


class NativeDetector(Detector):
    computes_with = COMPUTES_WITH
    code_version = 1  # bump when what this engine computes changes

    def __init__(self, network, model: DetectorModel, order: list):
        """`order`: the network's outputs to read: rtmdet, per level the class
        logits then the distances; end2end, dets then labels."""
        self.network, self.model, self.order = network, model, order
        # End2end files put NMS in the graph, which runtimes batch unreliably (OpenVINO refuses
        # MMDeploy's), and give each image its own number of boxes: they run one image at a
        # time, as MMDeploy and rtmlib run them (predict).
        self.batch_limit = 1 if model.head == "end2end" else network.fixed_batch()

    @staticmethod
    def _end2end_outputs(network) -> tuple[str | None, str | None]:
        shapes = {o.name: o.shape for o in network.outputs}
        dets = "dets" if "dets" in shapes else next((n for n, s in shapes.items() if len(s) == 3 and s[-1] == 5), None)
        labels = "labels" if "labels" in shapes else next((n for n, s in shapes.items() if len(s) == 2), None)
        good = dets is not None and labels is not None and len(shapes[dets]) == 3 and len(shapes[labels]) == 2 \
            and (not isinstance(shapes[dets][-1], int) or shapes[dets][-1] == 5)
        return (dets, labels) if good else (None, None)

    @classmethod
    def check(cls, network, entry, own=None) -> None:
        """An end2end detector (or the runner's own RTMDet export, `own` its
        record), or one line (before any image is read) saying what the file is."""
        if (own is None or own.description["kind"] != "detector") and cls._end2end_outputs(network) == (None, None):
            shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in network.outputs)
            raise RunnerError(f"detector {entry.get('path')} has outputs {shapes}: an MMDeploy end2end detector "
                              "gives dets [B, N, 5] and labels [B, N] (NMS inside the graph)")

    @classmethod
    def build(cls, network, model: DetectorModel, entry, flip_test: bool = False, structure=None) -> "NativeDetector":
        """On a checked `network`: the runner's RTMDet export (its record's output
        `structure`), or an end2end file (dets, labels)."""
        if model.head == "rtmdet":
            classes, distances = structure
            return cls(network, model, [*classes, *distances])
        names = [o.name for o in network.outputs]
        dets, labels = cls._end2end_outputs(network)
        return cls(network, model, [names.index(dets), names.index(labels)])

    def facts(self) -> dict:
        return {"input_size": list(self.model.input_size)}

    @staticmethod
    def network_inputs(model: DetectorModel, images: list[np.ndarray]) -> list[np.ndarray]:
        """What the network sees of each image (int8 calibration)."""
        return [normalize([letterbox(i, model.input_size, model.pad_val)[0]], model.mean, model.std, model.bgr_to_rgb)
                for i in images]

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        step = self.batch_limit or len(batch)
        parts = [self.network(batch[i:i + step]) for i in range(0, len(batch), step)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """One result per image: every box the model keeps (bboxes (N, 4) xyxy in
        image pixels, scores (N,), labels (N,)), before any threshold of ours."""
        model = self.model
        boxed = each_input(lambda image: letterbox(image, model.input_size, model.pad_val), images)
        batch = normalize([b[0] for b in boxed], model.mean, model.std, model.bgr_to_rgb)
        if model.head == "end2end":  # one image at a time (see __init__): each has its own number of boxes
            results = []
            for i in range(len(images)):
                found = self.network(batch[i:i + 1])
                results.append(self._end2end([found[k] for k in self.order], 0, boxed[i][1], images[i].shape[:2]))
            return results
        found = self._run(batch)
        outputs = [found[k] for k in self.order]
        levels = len(model.strides)
        height, width = boxed[0][0].shape[:2]
        return [rtmdet_boxes([o[i] for o in outputs[:levels]], [o[i] for o in outputs[levels:2 * levels]],
                             model.strides, (height, width), boxed[i][1], model.test_cfg) for i in range(len(images))]

    @staticmethod
    def _end2end(outputs: list[np.ndarray], i: int, factor: tuple[float, float], shape) -> dict[str, np.ndarray]:
        dets, labels = outputs[0][i], outputs[1][i]
        kept = dets[:, 4] > 0  # end2end files pad their fixed number of boxes with zeros
        boxes = dets[kept, :4] / np.array([factor[0], factor[1], factor[0], factor[1]], np.float32)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, shape[1])
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, shape[0])
        return {"bboxes": boxes.astype(np.float32).reshape(-1, 4), "scores": dets[kept, 4].astype(np.float32),
                "labels": labels[kept].astype(np.int64)}

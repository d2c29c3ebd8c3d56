"""Top-down SimCC pose models (RTMPose, RTMW, DWPose) on the native engine:
crops made as MMPose makes them, batched across boxes and images, the
network on ONNX Runtime or OpenVINO, SimCC decoded as MMPose decodes it."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from runner.blame import each_input
from runner.errors import RunnerError
from runner.native import COMPUTES_WITH
from runner.models.topdown import Topdown
from runner.native.decode import merge_flipped, simcc_keypoints
from runner.native.describe import TopdownModel
from runner.native.keypoints import for_count
from runner.native.preprocess import normalize, topdown_crop


# Crops the network takes at a time: on a CPU, RTMPose-m is fastest per crop in
# batches of about 8 under ONNX Runtime and OpenVINO (15.2 ms against 16.3 at 32
# and 17.4 at 1, 2 threads; benchmarks/peers.py), and its activations stay small.
NETWORK_BATCH = 8
AHEAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crops")  # OpenCV and the runtimes release the GIL


class NativeTopdown(Topdown):
    computes_with = COMPUTES_WITH
    code_version = 1  # bump when what this engine computes changes

    def __init__(self, network, model: TopdownModel, keypoints, flip_test: bool):
        self.network, self.model, self.keypoints, self.flip_test = network, model, keypoints, flip_test
        self.flip_indices = keypoints.flip_indices
        self.batch_limit = network.fixed_batch() or NETWORK_BATCH  # a file made for batch 1 takes one at a time

    def facts(self) -> dict:
        """What the model file says of itself (for evaluation, drawing, motion)."""
        return {"num_keypoints": len(self.keypoints), "keypoints": self.keypoints.name,
                "input_size": list(self.model.input_size)}

    @staticmethod
    def check(network, entry, own=None) -> None:
        """A SimCC export, or one line (before any image is read) saying what the file is."""
        outputs = [o.shape for o in network.outputs]
        if len(outputs) != 2 or any(len(shape) != 3 for shape in outputs):
            raise RunnerError(f"pose model {entry.get('path') or entry.get('name')} has outputs "
                              f"{', '.join(str(list(s)) for s in outputs)}: a SimCC pose export has two, simcc_x "
                              "[B, K, W*ratio] and simcc_y [B, K, H*ratio] (RTMPose, RTMW, DWPose)")

    @classmethod
    def build(cls, network, model: TopdownModel, entry, flip_test: bool, structure=None) -> "NativeTopdown":
        """On a checked `network`, for the entry's keypoint set (one line when the
        file's keypoint count is not the entry's)."""
        where = entry.get("path") or entry.get("name")
        count, wanted = network.outputs[0].shape[1], entry.get("num_keypoints")
        if not isinstance(count, int):  # a dynamic keypoint axis: the description (or the entry) says how many
            count = model.num_keypoints if model.num_keypoints is not None else wanted
        if count is None:
            raise RunnerError(f"pose model {where} does not fix its keypoint count: pass pose.model.num_keypoints=K")
        if wanted is not None and int(wanted) != int(count):
            raise RunnerError(f"pose model {where} predicts {count} keypoints, but pose.model.num_keypoints={wanted}: "
                              "pass the model of that keypoint set, or pose.model.num_keypoints=null")
        return cls(network, model, for_count(int(count), entry.get("keypoints")), flip_test)

    @staticmethod
    def network_inputs(model: TopdownModel, images: list[np.ndarray]) -> list[np.ndarray]:
        """What the network sees of each image taken whole as its box (int8 calibration)."""
        return [normalize([topdown_crop(i, np.array([0, 0, i.shape[1], i.shape[0]], np.float32), model.input_size,
                                        model.padding)[0]], model.mean, model.std, model.bgr_to_rgb) for i in images]

    def _prepare(self, inputs: list, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(network input batch, crop centres, crop scales) of (image, box) pairs
        (the `start`th of the batch on); a crop that cannot be made is its input's
        fault (runner.blame)."""
        model = self.model
        crops = each_input(lambda pair: topdown_crop(*pair, model.input_size, model.padding), inputs, start)
        return (normalize([c[0] for c in crops], model.mean, model.std, model.bgr_to_rgb),
                np.stack([c[1] for c in crops]), np.stack([c[2] for c in crops]))

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        simcc_x, simcc_y = self.network(batch)[:2]
        if self.flip_test:  # the mirrored crop too, its vectors mirrored back and averaged (RTMCCHead)
            flipped = self.network(np.ascontiguousarray(batch[..., ::-1]))[:2]
            simcc_x, simcc_y = merge_flipped(simcc_x, simcc_y, *flipped, self.flip_indices)
        return simcc_x, simcc_y

    def predict(self, inputs: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """One result per (image, box): keypoints (K, 2) in image pixels, keypoint_scores (K,).
        The crops of the next network batch are made while the network runs this one."""
        model, step, out = self.model, self.batch_limit, []
        parts = [inputs[i:i + step] for i in range(0, len(inputs), step)]
        coming = AHEAD.submit(self._prepare, parts[0])
        for at in range(len(parts)):
            batch, centers, scales = coming.result()
            if at + 1 < len(parts):
                coming = AHEAD.submit(self._prepare, parts[at + 1], (at + 1) * step)
            keypoints, scores = simcc_keypoints(*self._infer(batch), model.split_ratio, model.input_size, centers,
                                                scales)
            out += [{"keypoints": k.astype(np.float32), "keypoint_scores": s.astype(np.float32)}
                    for k, s in zip(keypoints, scores)]
        return out

"""Model families: the one table of what runs each `family:` named in
conf/detect/model/*.yaml and conf/pose/model/*.yaml.

A family with estimators runs as a cached ModelStage: one unit of work per
image or per box, as its estimators say. `reference` is MMPose's /
MMDetection's own (runner/models/), `native` the ONNX-native engine's
(runner/native/); which one runs a model is decided in runner/engines.py. A
family of ONNX model files has only the native one; a family without any
estimator is a stage of its own (boxes from somewhere other than a model).
Adding a family: its YAML entry, its module(s), a row here."""
from __future__ import annotations

from dataclasses import dataclass

from runner.errors import RunnerError
from runner.models.base import Estimator
from runner.models.internet import Hand3DEstimator
from runner.models.mmdet_detector import MMDetDetector
from runner.models.rtmo import BottomupEstimator
from runner.models.topdown import TopdownEstimator
from runner.native.blazepose import NativeBlazePose
from runner.native.detector import NativeDetector
from runner.native.hand import NativeHandLandmark
from runner.native.palm import NativePalmDetector
from runner.native.topdown import NativeTopdown
from runner.stages.base import Stage
from runner.stages.detect import FromFile, WholeImage
from runner.stages.download import Download
from runner.stages.evaluate import Evaluate
from runner.stages.export import Export
from runner.stages.model import ModelStage
from runner.stages.motion import Smooth
from runner.stages.track import Track
from runner.stages.visualize import Visualize


@dataclass(frozen=True)
class Family:
    stage: type[Stage]
    reference: type[Estimator] | None = None  # its `library` says mmdet or mmpose
    native: type | None = None
    onnx_file: bool = False                   # the model is a network file (`path`: ONNX, or MediaPipe's
                                              # .tflite), not a checkpoint + config

    @property
    def checkpoint_key(self) -> str:
        """The model entry's key that names its file (in messages: pose.model.path=...)."""
        return "path" if self.onnx_file else "checkpoint"

    @property
    def runs_model(self) -> bool:
        return self.reference is not None or self.native is not None

    @property
    def unit(self) -> str:
        return (self.reference or self.native).unit

    @property
    def has_flip_test(self) -> bool:
        """pose.flip_test=true can be honoured (its estimators run MMPose's flip test, or do as it does)."""
        return getattr(self.reference or self.native, "has_flip_test", False)

    @property
    def makes_boxes(self) -> bool:
        """Its model finds the boxes others take (a detector)."""
        return getattr(self.reference or self.native, "makes_boxes", False)


FAMILIES: dict[str, Family] = {
    "mmdet": Family(ModelStage, MMDetDetector, NativeDetector),          # RTMDet person / hand
    "topdown": Family(ModelStage, TopdownEstimator, NativeTopdown),      # RTMPose, RTMW, DWPose
    "rtmo": Family(ModelStage, BottomupEstimator),                       # RTMO (one stage, finds its own boxes)
    "internet": Family(ModelStage, Hand3DEstimator),                     # InterNet 3D hands
    "onnx_detector": Family(ModelStage, None, NativeDetector, True),     # an MMDeploy end2end detector file
    "onnx_topdown": Family(ModelStage, None, NativeTopdown, True),       # a SimCC pose export file
    "blazepose": Family(ModelStage, None, NativeBlazePose, True),        # MediaPipe's BlazePose (.onnx / .tflite)
    "mediapipe_hand": Family(ModelStage, None, NativeHandLandmark, True),  # MediaPipe's hand landmark model
    "mediapipe_palm": Family(ModelStage, None, NativePalmDetector, True),  # MediaPipe's palm detector
    "whole_image": Family(WholeImage),                                   # the whole image is the box
    "from_file": Family(FromFile),                                       # boxes from a COCO file
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise RunnerError(f"model family {name!r} is unknown: the model entry's `family:` must be one of "
                          f"{', '.join(FAMILIES)} (runner/families.py)")
    return FAMILIES[name]


MODEL_STEPS = ("detect", "pose")  # stages chosen by their model's family; the config section of that name
STEPS = {"download": Download, "track": Track, "smooth": Smooth, "visualize": Visualize, "export": Export,
         "evaluate": Evaluate}


def build_stage(ctx, step: str) -> Stage:
    """The stage of a recipe step (a step runner.schema.STEPS names: the config check refused any other)."""
    if step in STEPS:
        return STEPS[step](ctx)
    row = family(str(ctx.cfg[step].model.family))
    return row.stage(ctx, step, row) if row.runs_model else row.stage(ctx)

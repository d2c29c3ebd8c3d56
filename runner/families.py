"""Model families: the one table of what runs each `family:` named in
conf/detect/model/*.yaml and conf/pose/model/*.yaml.

A family with an estimator (runner/models/) runs as a cached ModelStage: one
unit of work per image or per box, as the estimator says; a family without
one is a stage of its own (boxes from somewhere other than a model).
Adding a family: its YAML entry, its module in runner/models/, a row here."""
from __future__ import annotations

from dataclasses import dataclass

from runner.errors import RunnerError
from runner.models.base import Estimator
from runner.models.internet import Hand3DEstimator
from runner.models.mmdet_detector import MMDetDetector
from runner.models.rtmo import BottomupEstimator
from runner.models.topdown import TopdownEstimator
from runner.stages.base import ModelStage, Stage
from runner.stages.detect import FromFile, WholeImage
from runner.stages.download import Download
from runner.stages.evaluate import Evaluate
from runner.stages.export import Export
from runner.stages.motion import Smooth
from runner.stages.track import Track
from runner.stages.visualize import Visualize


@dataclass(frozen=True)
class Family:
    stage: type[Stage]
    estimator: type[Estimator] | None = None  # its `library` says mmdet or mmpose


FAMILIES: dict[str, Family] = {
    "mmdet": Family(ModelStage, MMDetDetector),          # RTMDet person / hand
    "topdown": Family(ModelStage, TopdownEstimator),     # RTMPose, RTMW, DWPose
    "rtmo": Family(ModelStage, BottomupEstimator),       # RTMO (one stage, finds its own boxes)
    "internet": Family(ModelStage, Hand3DEstimator),     # InterNet 3D hands
    "whole_image": Family(WholeImage),                   # the whole image is the box
    "from_file": Family(FromFile),                       # boxes from a COCO file
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
    """The stage of a recipe step."""
    if step in STEPS:
        return STEPS[step](ctx)
    if step not in MODEL_STEPS:
        raise RunnerError(f"recipe step {step!r} is not known: steps are "
                          f"{', '.join([*MODEL_STEPS, *STEPS])}")
    row = family(str(ctx.cfg[step].model.family))
    return row.stage(ctx, step, row.estimator) if row.estimator else row.stage(ctx)

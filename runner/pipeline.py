"""Run a composed config: build the recipe's steps, stream the input through
them in chunks, and write the run folder (overlays, predictions, manifest)."""
from __future__ import annotations

import functools
import itertools
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from runner import atomic, report
from runner.cache import Store
from runner.checkpoints.download import Checkpoint, CheckpointResolver
from runner.errors import RunnerError
from runner.hashing import FileHasher
from runner.inputs import Source, open_source, prefetch
from runner.models.loading import resolve_device, set_threads
from runner.stages.base import Record, Stage
from runner.stages.detect import Detect, FromFile, WholeImage
from runner.stages.download import Download
from runner.stages.export import Export, record_dict
from runner.stages.pose import BottomupPose, Hand3DPose, TopdownPose
from runner.stages.visualize import Visualize
from runner.versions import STACK, versions

CHUNK_ITEMS = 16  # items that go through all steps together (bounded memory)

DETECTORS = {"mmdet": Detect, "whole_image": WholeImage, "from_file": FromFile}
POSE_FAMILIES = {"topdown": TopdownPose, "rtmo": BottomupPose, "internet": Hand3DPose}
STEPS = {"download": Download, "visualize": Visualize, "export": Export}


@dataclass
class RunResult:
    records: list[dict]
    manifest: dict
    out_dir: Path | None
    failed: list[dict] = field(default_factory=list)

    @property
    def stages(self) -> dict[str, dict]:
        return self.manifest["stages"]


class RunContext:
    """What every stage of one run shares."""

    def __init__(self, cfg: DictConfig, out_dir: Path | None):
        self.cfg = cfg
        self.out_dir = out_dir
        self.dry_run = bool(cfg.dry_run)
        self.refresh = bool(cfg.cache.refresh)
        cache_dir = Path(str(cfg.cache.dir)).expanduser()
        self.store = Store(cache_dir / "stages")
        self.hasher = FileHasher(cache_dir / "memo")
        self.resolver = CheckpointResolver(str(cfg.download.dir), cfg.download.mirror,
                                           float(cfg.download.timeout_s), self.hasher)
        self.device = resolve_device(cfg.device)
        self.steps = [str(s) for s in cfg.recipe.steps]
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
        self.source: Source | None = None
        self._checkpoints: dict[str, Checkpoint | None] = {}

    def model_roles(self) -> list[str]:
        """The steps that run a model with a checkpoint ("detect", "pose")."""
        roles = []
        if "detect" in self.steps and self.cfg.detect.model.get("checkpoint"):
            roles.append("detect")
        if "pose" in self.steps:
            roles.append("pose")
        return roles

    def checkpoint(self, role: str) -> Checkpoint | None:
        if role not in self._checkpoints:
            entry = self.cfg[role].model
            chosen = (self.cfg.download.get("checkpoints") or {}).get(str(entry.name))
            spec, owner = (chosen, f"download.checkpoints.{entry.name}") if chosen else \
                (entry.checkpoint, f"{role}.model.checkpoint")
            self._checkpoints[role] = self.resolver.resolve(str(spec), owner=owner, fetch=not self.dry_run)
        return self._checkpoints[role]

    def backend(self, role: str) -> str:
        """What runs `role`'s network: pytorch or onnxruntime (auto: ONNX Runtime
        on the CPU, PyTorch on a GPU)."""
        name = str(self.cfg.backend.name)
        if name == "auto":
            return "pytorch" if self.device.startswith("cuda") else "onnxruntime"
        if name not in ("pytorch", "onnxruntime"):
            raise RunnerError(f"backend {name!r} is unknown: use backend=auto, backend=pytorch "
                              "or backend=onnxruntime")
        return name

    def load_model(self, role: str):
        """The MMDet / MMPose model of `role`, with its network on the chosen backend."""
        from runner.models.loading import load_model
        entry, checkpoint = self.cfg[role].model, self.checkpoint(role)
        registry = "mmdet" if role == "detect" else "mmpose"
        return load_model(registry, str(entry.config), str(checkpoint.path), checkpoint.sha256, self.device,
                          self.backend(role), str(Path(str(self.cfg.backend.dir)).expanduser()),
                          tuple(int(v) for v in entry.input_size))

    @functools.cache
    def dataset_meta(self) -> dict:
        """Keypoint names, skeleton and colours of the pose model's dataset."""
        from mmpose.apis.inference import dataset_meta_from_config
        from mmpose.datasets.datasets.utils import parse_pose_metainfo
        from runner.models.loading import load_config
        meta = dataset_meta_from_config(load_config(str(self.cfg.pose.model.config)),
                                        dataset_mode="train")
        return meta or parse_pose_metainfo(dict(from_file="configs/_base_/datasets/coco.py"))

    def parts(self) -> dict:
        """Named keypoint ranges of the pose model (body, feet, face, hands), if any."""
        model = self.cfg.get("pose", {}).get("model")
        parts = model.get("parts") if model else None
        return {str(k): (int(v[0]), int(v[1])) for k, v in parts.items()} if parts else {}

    def fps(self, source: str) -> float:
        return float(getattr(self.source, "fps", 25.0))


def build_stages(ctx: RunContext) -> list[Stage]:
    stages = []
    for step in ctx.steps:
        if step == "detect":
            family = str(ctx.cfg.detect.model.family)
            cls = DETECTORS.get(family)
        elif step == "pose":
            family = str(ctx.cfg.pose.model.family)
            cls = POSE_FAMILIES.get(family)
        else:
            family, cls = step, STEPS.get(step)
        if cls is None:
            raise RunnerError(f"recipe step {step!r} ({family}) is not known: steps are "
                              "download, detect, pose, visualize, export")
        stages.append(cls(ctx))
    return stages


def check_values(cfg: DictConfig) -> None:
    """Values Hydra cannot type-check, checked before any work starts."""
    if OmegaConf.is_missing(cfg, "input"):
        raise RunnerError("no input: pass input=PATH (an image, a folder of images, a video) "
                          "or input=webcam")
    for key in ("detect.bbox_thr", "detect.nms_thr", "visualize.kpt_thr"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise RunnerError(f"{key}={value} is not a number between 0 and 1")
    for key in ("detect.batch_size", "pose.batch_size"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise RunnerError(f"{key}={value} is not a positive whole number")


def execute(cfg: DictConfig, keep_records: bool = True) -> RunResult:
    """Run a composed config; files go to cfg.output.dir (none in a dry run)."""
    check_values(cfg)
    set_threads(cfg.device.get("threads"))
    out_dir = None if cfg.dry_run or cfg.output.dir is None else Path(str(cfg.output.dir))
    ctx = RunContext(cfg, out_dir)
    started = datetime.now(timezone.utc)
    stages = build_stages(ctx)
    ctx.source = source = open_source(str(cfg.input), ctx.hasher, cfg.max_frames)
    for stage in stages:
        stage.setup()
    records_out: list[dict] = []
    failed: list[dict] = []
    empty: list[str] = []  # items where nothing was found (no whole-image fallback)
    inputs: list[dict] = []
    total = len(source) if hasattr(source, "__len__") else None
    bars = {s.name: tqdm(total=total, desc=f"{s.name:9s}", unit="item", leave=False,
                         position=i, dynamic_ncols=True, disable=None)
            for i, s in enumerate(stages) if s.name != "download"}
    status = "interrupted"
    try:
        items = prefetch(iter(source))
        while chunk := list(itertools.islice(items, CHUNK_ITEMS)):
            records = [Record(item, error=item.error) for item in chunk]
            for stage in stages:
                (stage.plan if ctx.dry_run else stage.run)(records)
                if stage.name in bars:
                    bars[stage.name].update(len(records))
            for record in records:
                if source.kind == "images":
                    inputs.append({"id": record.item.id, "sha256": record.item.content_key})
                if record.error:
                    failed.append({"id": record.item.id, "error": record.error})
                elif record.boxes is not None and len(record.boxes) == 0:
                    empty.append(record.item.id)
                if keep_records:
                    records_out.append(record_dict(record, ctx.parts()))
                record.item.release()
        status = "failed" if failed else "ok"
    finally:
        for bar in bars.values():
            bar.close()
        for stage in stages:
            stage.finish()
        ctx.pool.shutdown()
        manifest = make_manifest(cfg, ctx, stages, source, inputs, failed, empty, started, status)
        if out_dir is not None:
            atomic.write_json(out_dir / "manifest.json", manifest, indent=2)
    return RunResult(records_out, manifest, out_dir, failed)


def make_manifest(cfg, ctx, stages, source, inputs, failed, empty, started, status) -> dict:
    return {
        "status": status,
        "recipe": str(cfg.recipe.name),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": {**versions(*STACK), "python": platform.python_version()},
        "device": ctx.device,
        "checkpoints": {role: ({"file": str(c.path), "sha256": c.sha256, "origin": c.origin}
                               if (c := ctx._checkpoints.get(role)) else None)
                        for role in ctx.model_roles()},
        "input": {**source.describe(), "items": inputs} if source else None,
        "stages": {s.name: s.stats.as_dict() for s in stages},
        "failed": failed,
        "empty": empty,
    }


def summary(result: RunResult, dry_run: bool) -> str:
    return report.plan_table(result.stages) if dry_run else report.stage_table(result)

"""Run a composed config: build the recipe's steps, stream the input through
them in chunks, and write the run folder (overlays, predictions, manifest)."""
from __future__ import annotations

import itertools
import logging
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from runner import atomic, console, objects, signals
from runner.cache import Store
from runner.checkpoints.download import Checkpoint, CheckpointResolver, file_name_of
from runner.config import check_values, use_model_files
from runner.errors import RunnerError
from runner.families import MODEL_STEPS, build_stage, family
from runner.hashing import FileHasher
from runner.jobs import publish
from runner.inputs import STREAM_SCHEMES, Reading, Source, open_source, prefetch
from runner.backends import files
from runner.backends.table import Backend, choose_backend, resolve_device
from runner.schema import machine_dir
from runner.outputs import RunFolder, check_run_folder, claim_run_folder
from runner.shards import frames_in_shard, in_shard
from runner.stages.base import Record, Stage
from runner.stages.export import keypoint_parts, record_dict
from runner.stages.reads import check_files
from runner.tracking import DetectEvery
from runner.versions import STACK, versions

log = logging.getLogger(__name__)

CHUNK_ITEMS = 16  # items that go through all steps together (bounded memory)


@dataclass
class RunResult:
    records: list[dict]
    manifest: dict
    out_dir: Path | None
    failed: list[dict] = field(default_factory=list)

    @property
    def stages(self) -> dict[str, dict]:
        return self.manifest["stages"]

    @property
    def metrics(self) -> dict | None:
        """The evaluate step's result (eval.ann_file), if it ran."""
        return self.manifest.get("metrics")


class RunContext:
    """What every stage of one run shares. `environment` is a run's recorded
    device and backend (its manifest's): a merge or replay reuses them, so
    its cache keys are the ones the recorded run made, whatever this host has."""

    def __init__(self, cfg: DictConfig, out_dir: Path | None, environment: dict | None = None):
        self.cfg = cfg
        self.outputs = RunFolder(out_dir, video_files(cfg)) if out_dir is not None else None
        self.dry_run = bool(cfg.dry_run)
        self.refresh = bool(cfg.cache.refresh)
        atomic.set_lock_kind(str(cfg.cache.lock))
        atomic.CreateLock.STALE_S = float(cfg.cache.lock_stale_s)
        self.store = open_store(str(cfg.cache.dir), float(cfg.cache.lock_timeout_s))
        self.hasher = FileHasher(machine_dir(cfg) / "memo")
        files.set_hasher(self.hasher)  # exports are checked through the same stat memo
        self.resolver = CheckpointResolver(str(cfg.download.dir), cfg.download.mirror,
                                           float(cfg.download.timeout_s), self.hasher)
        self.environment = environment
        if environment:
            self.device, self.backend = environment["device"], Backend.recorded(environment["backend"])
        else:
            self.device = resolve_device(cfg.device)
            model_files = [role for role in MODEL_STEPS if role in cfg.recipe.steps
                           and family(str(cfg[role].model.family)).onnx_file]
            tflite = [f"{role}.model.path={cfg[role].model.path}" for role in model_files
                      if file_name_of(str(cfg[role].model.path)).lower().endswith(".tflite")]
            self.backend = choose_backend(cfg.backend, self.device, onnx_files=bool(model_files),
                                          tflite_files=tflite[0] if tflite else None)
        self.steps = steps(cfg)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
        self.source: Source | None = None
        self.checkpoints: dict[str, Checkpoint | None] = {}
        self.learned: dict[str, dict] = {}  # role -> what its model file said of itself (model_facts)
        self._ground_truth = None

    def recorded_libs(self, stage: str) -> dict | None:
        """The library versions a recorded run's `stage` computed its entries with
        (a merge reads the shards' model entries, computed on their hosts), or
        None: this host's own."""
        return ((self.environment or {}).get("libs") or {}).get(stage)

    def model_facts(self, role: str) -> dict:
        """`role`'s model entry, with what its model file said of itself (an ONNX
        file: num_keypoints, input_size, keypoints), once its stage has set up."""
        return {**OmegaConf.to_container(self.cfg[role].model, resolve=True), **self.learned.get(role, {})}

    def unit(self, role: str) -> str:
        """What `role`'s model takes at a time: "image" or "box"."""
        return family(str(self.cfg[role].model.family)).unit

    def ground_truth(self):
        """eval.ann_file, read once (None without one)."""
        if self._ground_truth is None and self.cfg.eval.ann_file:
            from runner.evaluation import load_ground_truth
            self._ground_truth = load_ground_truth(self.cfg.eval.ann_file)
        return self._ground_truth

    def image_ids(self):
        """The run's COCO image ids: eval.ann_file's when there is one."""
        gt = self.ground_truth()
        return gt.ids if gt is not None else None

    def model_roles(self) -> list[str]:
        """The steps that run a model with a checkpoint ("detect", "pose")."""
        return [step for step in MODEL_STEPS if step in self.steps
                and family(str(self.cfg[step].model.family)).runs_model]

    def checkpoint(self, role: str) -> Checkpoint | None:
        """`role`'s checkpoint, resolved once (None in a dry run when not at hand)."""
        if role not in self.checkpoints:
            entry = self.cfg[role].model
            chosen = (self.cfg.download.get("checkpoints") or {}).get(str(entry.name))
            spec, owner = (chosen, f"download.checkpoints.{entry.name}") if chosen else \
                (entry.checkpoint, f"{role}.model.{family(str(entry.family)).checkpoint_key}")
            self.checkpoints[role] = self.resolver.resolve(str(spec), owner=owner, fetch=not self.dry_run,
                                                           sha256=None if chosen else entry.get("sha256"),
                                                           pinned_by=f"{role}.model.sha256")
        return self.checkpoints[role]


def open_store(cache_dir: str, lock_timeout_s: float) -> Store:
    """The stage cache: <cache.dir>/stages, a folder or a bucket prefix."""
    if objects.is_url(cache_dir):
        from runner.cache.remote import ObjectStore
        return ObjectStore(f"{cache_dir.rstrip('/')}/stages", lock_timeout_s)
    folder = Path(cache_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise RunnerError(f"cache.dir={folder} is a file: point cache.dir (or POSE_RUNNER_CACHE) at a folder")
    return Store(folder / "stages", lock_timeout_s)


def video_files(cfg: DictConfig) -> tuple[str, ...]:
    """The files a run names after a video besides its predictions (runner.outputs.RunFolder.name_error)."""
    table = {"csv": ("{name}.csv",), "parquet": ("{name}.parquet",)}.get(str(cfg.export.table), ())
    return table + (("{stem}_000000000000_keypoints.json",) if cfg.export.openpose else ())


def steps(cfg: DictConfig) -> list[str]:
    """The recipe's steps, and those the config turns on: track and smooth
    after pose (smoothing and per-track outputs need tracks), evaluate last."""
    chosen = [str(s) for s in cfg.recipe.steps]
    motion = bool(cfg.smooth.enabled or cfg.export.openpose or cfg.export.table or cfg.export.trc)
    wanted = {"track": bool(cfg.track.enabled) or motion, "smooth": motion, "evaluate": bool(cfg.eval.ann_file)}
    at = chosen.index("pose") + 1 if "pose" in chosen else len(chosen)
    for step in ("track", "smooth"):
        if wanted[step] and step not in chosen:
            chosen.insert(at, step)
            at += 1
    if wanted["evaluate"] and "evaluate" not in chosen:
        chosen.append("evaluate")
    return chosen


def reading(cfg: DictConfig) -> Reading:
    return Reading(max_frames=cfg.max_frames, frame_stride=int(cfg.frame_stride), max_pixels=cfg.max_pixels,
                   recursive=bool(cfg.recursive), wanted=frames_in_shard(cfg))


def execute(cfg: DictConfig, keep_records: bool = True, environment: dict | None = None,
            recorded: dict | None = None) -> RunResult:
    """Run a composed config; files go to cfg.output.dir. The run folder gets a
    manifest when the run starts (`running`) and whatever happens after:
    `ok`, `failed` (some items failed), `error` (the run stopped: a RunnerError,
    or any other exception, with its message) or `interrupted` (Ctrl-C, SIGTERM,
    a preemption). A dry run writes only its manifest (`dry_run: true`), and
    none into a folder that holds a run. `environment`: see RunContext.
    `recorded`: a recorded run's manifest `stages` (replay): every file its
    stages read must have the same content now, checked before any image."""
    folder = None if cfg.output.dir is None else Path(str(cfg.output.dir))
    dry = bool(cfg.dry_run)
    run = Run(cfg, None if dry else folder, keep_records, environment, recorded)
    # The manifest goes to a dry run's folder unless it holds a run (a dry run never
    # touches a run's files), to a run's once it is this run's (a refused take-over
    # leaves the earlier run's manifest as it was).
    write_to = folder if dry and folder is not None and check_run_folder(folder) is None else None
    status, error = "interrupted", None
    shared = not dry and int(cfg.shard.count) > 1 and objects.is_url(str(cfg.cache.dir))
    try:
        if folder is not None and not dry:
            run.previous = claim_run_folder(folder)
            write_to = folder
            atomic.write_json(folder / "manifest.json", run.manifest("running", None), indent=2)
        if shared:  # a shard whose cache is a bucket: its merge reads its manifest there
            publish(cfg, run.manifest("running", None), folder)
        run.go()
        status = "failed" if run.failed else "ok"
    except RunnerError as err:
        status, error = "error", str(err)
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # a bug, out of memory, a CUDA error; or a launcher's own stop (SystemExit)
        if signals.received is None and not isinstance(err, SystemExit):
            status, error = "error", one_line(err)
        raise
    finally:
        manifest = run.manifest(status, error)
        if write_to is not None:
            write_to.mkdir(parents=True, exist_ok=True)
            atomic.write_json(write_to / "manifest.json", manifest, indent=2)
        if shared:
            try:
                publish(cfg, manifest, folder)
            except objects.StorageError as err:  # the run's own error (the same store, most likely) says more
                log.warning("%s", err)
    return RunResult(run.records, manifest, write_to, run.failed)


def one_line(err: BaseException) -> str:
    """An exception as one line: its type and the last line of its message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else repr(err)}"


class Run:
    """One run's state as it streams the input through the stages."""

    def __init__(self, cfg: DictConfig, out_dir: Path | None, keep_records: bool, environment: dict | None = None,
                 recorded: dict | None = None):
        self.cfg, self.out_dir, self.keep_records, self.environment = cfg, out_dir, keep_records, environment
        self.recorded = recorded or {}
        self.started = datetime.now(timezone.utc)
        self.ctx: RunContext | None = None
        self.stages: list[Stage] = []
        self.records: list[dict] = []
        self.failed: list[dict] = []
        self.empty: list[str] = []  # items where nothing was found (no whole-image fallback)
        # every input the run read or tried to: name -> {sha256, error} (the manifest's, and replay's, record)
        self.inputs: dict[str, dict] = {}
        self.previous: dict | None = None  # the earlier run this run's folder held (claim_run_folder)
        self.set_up: list[Stage] = []  # the stages whose setup finished

    def go(self) -> None:
        cfg = self.cfg
        use_model_files(cfg)
        check_values(cfg)
        self.ctx = ctx = RunContext(cfg, self.out_dir, self.environment)
        set_up = self.set_up
        try:
            self.stages = [build_stage(ctx, step) for step in ctx.steps]
            ctx.source = open_source(str(cfg.input), ctx.hasher, reading(cfg))
            for stage in self.stages:
                stage.setup()
                set_up.append(stage)
                if (self.recorded.get(stage.name) or {}).get("reads") and stage.manifest_reads() is not None:
                    check_files(stage.name, stage.declared(), self.recorded[stage.name]["reads"])
            self._stream(ctx.source)
            for stage in self.stages:
                stage.end()
        finally:
            for stage in set_up:
                stage.finish()
            ctx.pool.shutdown()

    def _stream(self, source: Source) -> None:
        parts = keypoint_parts(self.cfg)
        total = len(source) if hasattr(source, "__len__") else None
        bars = {s.name: console.progress(total=total, desc=f"{s.name:9s}", unit="item", leave=False,
                                         position=i, dynamic_ncols=True)
                for i, s in enumerate(self.stages) if s.name != "download"}
        try:
            items = prefetch(item for item in source if in_shard(self.cfg, item))
            every = self._detect_every()
            framewise = self.stages[:self.stages.index(self._pose) + 1] if every else []
            outputs = self.ctx.outputs
            while chunk := list(itertools.islice(items, CHUNK_ITEMS)):
                records = [Record(item, error=item.error or (outputs.name_error(item.name, item.frame_index is not None)
                                                             if outputs is not None else None)) for item in chunk]
                for record in records if every else []:  # detect and pose frame by frame: each needs the last
                    every.before(record)
                    for stage in framewise:
                        (stage.plan if self.ctx.dry_run else stage.run)([record])
                    every.after(record)
                for stage in self.stages:
                    if stage not in framewise:
                        (stage.plan if self.ctx.dry_run else stage.run)(records)
                    if stage.name in bars:
                        bars[stage.name].update(len(records))
                for record in records:
                    self._done(record, parts)
        finally:
            for bar in bars.values():
                bar.close()

    @property
    def _pose(self) -> Stage:
        return next(s for s in self.stages if s.name == "pose")

    def _detect_every(self) -> DetectEvery | None:
        """detect.every > 1 with a model detector: the frame-by-frame schedule."""
        cfg = self.cfg
        if int(cfg.detect.every) <= 1 or "detect" not in self.ctx.steps or "pose" not in self.ctx.steps:
            return None
        if not family(str(cfg.detect.model.family)).runs_model:
            return None
        return DetectEvery(int(cfg.detect.every), float(cfg.detect.every_kpt_thr), int(cfg.frame_stride),
                           self.ctx.dry_run)

    def _done(self, record: Record, parts: dict) -> None:
        item = record.item
        if item.name not in self.inputs and not item.source.startswith(("webcam:", *STREAM_SCHEMES)):
            sha = item.video_key or (item.content_key if item.frame_index is None else None)
            self.inputs[item.name] = {"sha256": sha or None, **({"error": item.error} if item.error else {})}
        if record.error:
            self.failed.append({"id": record.item.id, "error": record.error})
        elif record.boxes is not None and len(record.boxes) == 0:
            self.empty.append(record.item.id)
        if self.keep_records:
            self.records.append(record_dict(record, parts))
        record.item.release()

    def manifest(self, status: str, error: str | None) -> dict:
        cfg, ctx = self.cfg, self.ctx
        source = ctx.source if ctx else None
        return {
            "status": status,
            **({"error": error} if error else {}),
            **({"signal": signals.received} if status == "interrupted" and signals.received else {}),
            **({"dry_run": True} if cfg.dry_run else {}),
            "recipe": str(cfg.recipe.name),
            "started": self.started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": redacted(sys.argv),
            "config": resolved(cfg),
            "versions": {**versions(*STACK), "python": platform.python_version()},
            "device": ctx.device if ctx else (self.environment or {}).get("device"),
            "backend": ctx.backend.describe() if ctx else (self.environment or {}).get("backend"),
            "checkpoints": {role: ({"file": str(c.path), "sha256": c.sha256, "origin": c.origin}
                                   if (c := ctx.checkpoints.get(role)) else None)
                            for role in (ctx.model_roles() if ctx else [])},
            "input": redacted({**source.describe(), "items": [{"id": k, **v} for k, v in self.inputs.items()]})
            if source else None,
            "stages": {s.name: {**s.stats.as_dict(), **({"reads": r} if (r := self._reads(s)) else {})}
                       for s in self.stages},
            "failed": self.failed,
            "empty": self.empty,
            "warnings": [*(source.warnings if source else []),
                         *(w for stage in self.stages for w in stage.warnings())],
            **({"previous_run": self.previous} if self.previous else {}),
            **{k: v for stage in self.stages for k, v in stage.manifest_fields().items()},
        }


    def _reads(self, stage: Stage) -> dict | None:
        """What the stage's results were computed from, for the manifest (a run
        that stopped before its stages could say has none)."""
        if stage not in self.set_up:
            return None
        try:
            return stage.manifest_reads()
        except Exception:
            return None


def resolved(cfg: DictConfig) -> dict:
    """The config as plain data, interpolations resolved (where a value is missing, as written)."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # a missing mandatory value: the run's error says which
        plain = OmegaConf.to_container(cfg, resolve=False)
    return redacted(plain)


def redacted(value):
    """Plain data with every URL's user:password@ hidden (the config's checks refuse
    them in s3:// URLs; a stream's URL may carry them, and a manifest never does)."""
    if isinstance(value, str):
        return objects.redact(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def summary(result: RunResult, dry_run: bool) -> str:
    return console.plan_table(result.stages) if dry_run else console.stage_table(result)

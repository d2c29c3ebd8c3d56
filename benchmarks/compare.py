"""Side-by-side speed and memory: pose-runner against MMPose's own inference.

    python -m benchmarks.compare [--images DIR] [--video FILE] [--repeats 3] [--no-mixed]

Every contender gets the same images, the same checkpoints (RTMDet-m person +
RTMPose-m body8, made locally once from their configs: the official ones cannot
be downloaded here), the same device and thread count. Repetitions are
interleaved (each round runs every contender once, in a rotated order) and the
table reports medians. Untrained detectors find arbitrary boxes, but the runner
matches MMPose's detections exactly (tests/test_body_rtmpose.py), so every
contender sees the same boxes; the box column says how many.

Two input folders: the shared images (the COCO four + the video's frames) and a
mixed-size folder (10 images of different sizes + the video's frames), where
batching matters most.

The limit ("forward only") replays exactly the input batches the networks see
in a runner run (recorded at the models' extract_feat: after the test
pipeline's resize and pad, batched as the runner batches, flipped crops
included), so it bounds the model work, not a batching choice of its own.

Writes benchmarks/results/compare.{json,md} (or --out)."""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from runner.measures import write_frames

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DETECTOR, POSE = "rtmdet_m_person", "rtmpose_m"
BBOX_THR = 0.8  # keeps the untrained detector's boxes to a few per image (113 on the COCO four)
TARGETS = {  # name: (ratio, comparison, bound, what it means)
    "cold_vs_inferencer": ("MMPoseInferencer time / runner cold (backend=auto: ONNX Runtime f32) time", ">=", 1.7),
    "bf16_vs_inferencer": ("MMPoseInferencer time / runner cold OpenVINO bf16 time", ">=", 3.0),
    "cold_vs_limit": ("runner cold time / ONNX Runtime forward-only time", "<=", 1.15),
    "openvino_vs_limit": ("runner cold OpenVINO f32 time / its forward-only time", "<=", 1.15),
    "bf16_vs_limit": ("runner cold OpenVINO bf16 time / its forward-only time", "<=", 1.15),
    "warm_vs_cold": ("runner warm time / runner cold time", "<=", 0.03),
    "sweep_vs_cold": ("8-job sweep time / one runner cold time", "<=", 1.3),
    "rss_1000_vs_100": ("peak RSS at 1000 frames / at 100 frames", "<=", 1.1),
}


# -- set-up ------------------------------------------------------------------------
def checkpoints(folder: Path, names=(DETECTOR, POSE)) -> dict[str, Path]:
    from runner.models.fabricate import fabricate, load_images
    from runner.models.registry import load_entry
    images = load_images(DATA / "coco")
    return {name: fabricate(load_entry(name), folder, 0, images) for name in names}


def input_folder(images: Path, video: Path, work: Path) -> Path:
    """The images, plus every frame of the video."""
    folder = work / "inputs"
    folder.mkdir(exist_ok=True)
    for path in sorted(images.glob("*.jpg")):
        (folder / path.name).write_bytes(path.read_bytes())
    write_frames(video, folder)  # lossless PNGs: every contender decodes the same pixels
    return folder


MIXED_SCALES = (0.5, 0.75, 1.25, 1.6, 2.0)


def mixed_folder(images: Path, video: Path, work: Path) -> Path:
    """10 images of 10 different sizes (the images, one more photo, and rescaled
    copies of the images), plus every frame of the video."""
    folder = work / "mixed"
    folder.mkdir(exist_ok=True)
    sources = sorted(images.glob("*.jpg")) + [DATA / "sunglasses.jpg"]
    for path in sources:
        (folder / path.name).write_bytes(path.read_bytes())
    for i, scale in enumerate(MIXED_SCALES):
        image = cv2.imread(str(sources[i % 4]))
        cv2.imwrite(str(folder / f"scaled{scale}_{sources[i % 4].stem}.png"),
                    cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    write_frames(video, folder)  # lossless PNGs: every contender decodes the same pixels
    return folder


def long_video(video: Path, frames: int, out: Path) -> Path:
    """`video`'s frames looped to `frames` frames (for the memory measurement)."""
    capture = cv2.VideoCapture(str(video))
    source = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        source.append(frame)
    h, w = source[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for i in range(frames):
        writer.write(source[i % len(source)])
    writer.release()
    return out


# -- contenders ---------------------------------------------------------------------
class Bench:
    def __init__(self, ckpt: dict[str, Path], folder: Path, work: Path, threads: int):
        from runner.models.configs import resolve_config_path
        from runner.models.registry import load_entry
        self.ckpt, self.folder, self.work, self.threads = ckpt, folder, work, threads
        self.det_config = str(resolve_config_path(load_entry(DETECTOR).config))
        self.pose_config = str(resolve_config_path(load_entry(POSE).config))
        self.paths = sorted(str(p) for p in folder.iterdir())
        self.runs = 0
        self._inferencer = self._models = self._limits = None
        self.warm_cache = None

    # MMPose's reference paths
    def mmpose_inferencer(self):
        from mmpose.apis import MMPoseInferencer
        if self._inferencer is None:
            self._inferencer = MMPoseInferencer(
                pose2d=self.pose_config, pose2d_weights=str(self.ckpt[POSE]), det_model=self.det_config,
                det_weights=str(self.ckpt[DETECTOR]), det_cat_ids=[0], device="cpu", show_progress=False)
        boxes = 0
        for result in self._inferencer(self.paths, bbox_thr=BBOX_THR, nms_thr=0.3):
            boxes += len(result["predictions"][0])
        return boxes

    def models(self):
        if self._models is None:
            from mmdet.apis import init_detector
            from mmpose.apis import init_model
            from mmpose.utils import adapt_mmdet_pipeline
            det = init_detector(self.det_config, str(self.ckpt[DETECTOR]), device="cpu")
            det.cfg = adapt_mmdet_pipeline(det.cfg)
            self._models = det, init_model(self.pose_config, str(self.ckpt[POSE]), device="cpu")
        return self._models

    def topdown_demo_loop(self):
        """topdown_demo_with_mmdet.py's loop, without drawing."""
        from mmdet.apis import inference_detector
        from mmpose.apis import inference_topdown
        from mmpose.evaluation.functional import nms
        det, pose = self.models()
        boxes = 0
        for path in self.paths:
            pred = inference_detector(det, path).pred_instances.cpu().numpy()
            found = np.concatenate((pred.bboxes, pred.scores[:, None]), axis=1)
            found = found[np.logical_and(pred.labels == 0, pred.scores > BBOX_THR)]
            found = found[nms(found, 0.3)]
            inference_topdown(pose, path, found[:, :4])
            boxes += len(found)
        return boxes

    def detector_loop(self):
        from mmdet.apis import inference_detector
        det, _ = self.models()
        for path in self.paths:
            inference_detector(det, path)
        return None

    # the runner
    def runner(self, backend: str, *more, cache: Path | None = None, steps: str | None = None,
               bbox_thr: float = BBOX_THR, precision: str = "f32"):
        import runner
        self.runs += 1
        cache = cache or self.work / "cache" / f"{self.runs}"
        args = [f"detect/model={DETECTOR}", f"pose/model={POSE}", f"cache.dir={cache}",
                f"backend.dir={self.work / 'onnx'}", f"backend={backend}", f"backend.precision={precision}",
                f"detect.bbox_thr={bbox_thr}", f"+download.checkpoints.{DETECTOR}={self.ckpt[DETECTOR]}",
                f"+download.checkpoints.{POSE}={self.ckpt[POSE]}", *more]
        if steps:
            args.append(f"recipe.steps={steps}")
        result = runner.run(recipe="body_rtmpose", input=self.folder, overrides=args,
                            output_dir=self.work / "out" / str(self.runs), keep_records=False)
        self.last_cache = cache
        return result.stages.get("pose", {}).get("units")

    def runner_warm(self):
        self.runner("onnxruntime", cache=self.warm_cache)
        return None

    def sweep(self):
        """8 jobs (detect.bbox_thr x visualize.kpt_thr, 4 x 2) sharing one cache, as
        `python -m runner -m ...` runs them (sequentially, models loaded once)."""
        cache = self.work / "cache" / f"sweep{self.runs}"
        for thr in (BBOX_THR, 0.85, 0.9, 0.95):
            for kpt in (0.3, 0.5):
                self.runner("onnxruntime", f"visualize.kpt_thr={kpt}", cache=cache, bbox_thr=thr)
        return None

    # the limit: the networks alone, on the very batches a runner run gives them
    def record_inputs(self) -> list[tuple[str, torch.Tensor]]:
        """(role, batch) for every network pass of a cold PyTorch runner run, in order."""
        if self._limits is None:
            from mmdet.models.detectors.single_stage import SingleStageDetector
            from mmpose.models.pose_estimators.base import BasePoseEstimator
            recorded: list = []
            originals = {}
            for cls, role in ((SingleStageDetector, "detect"), (BasePoseEstimator, "pose")):
                originals[cls] = cls.extract_feat

                def recording(model, inputs, _role=role, _original=originals[cls]):
                    recorded.append((_role, inputs.detach().clone()))
                    return _original(model, inputs)
                cls.extract_feat = recording
            try:
                self.runner("pytorch")
            finally:
                for cls, original in originals.items():
                    cls.extract_feat = original
            self._limits = recorded
        return self._limits

    def limit(self, backend: str, precision: str = "f32"):
        """The networks alone: PyTorch's own forward, or the export on ONNX Runtime / OpenVINO."""
        import numpy as np
        from runner.backends.files import ExportSpec
        from runner.models.loading import ensure_export
        from runner.backends.network import Network
        from runner.hashing import sha256_file
        from runner.models.loading import load_model
        from runner.models.registry import load_entry
        nets = {}
        for role, library, name in (("detect", "mmdet", DETECTOR), ("pose", "mmpose", POSE)):
            entry = load_entry(name)
            spec = ExportSpec.of(str(self.ckpt[name]), sha256_file(self.ckpt[name]), str(entry.config), library,
                                 entry.input_size, str(self.work / "onnx"), name)
            if backend == "pytorch":
                model = load_model(spec, "cpu", backend, precision)
                nets[role] = model._forward if precision == "f32" else (lambda m: lambda x: m.extract_feat(x).outputs)(
                    model)
            else:
                net = Network(ensure_export(spec), backend, self.threads, precision, name)
                nets[role] = (lambda n: lambda x: n(np.ascontiguousarray(x.numpy())))(net)
        passes = 0
        with torch.no_grad():
            for role, batch in self.record_inputs():
                nets[role](batch)
                passes += len(batch) if role == "pose" else 0
        return passes // 2  # boxes: the recorded PyTorch run's flip test ran each crop twice


# -- memory -----------------------------------------------------------------------
def peak_rss_mb(args: list[str]) -> float:
    """Peak resident memory (MB) of a runner process, sampled every 20 ms."""
    import psutil
    process = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    if process.returncode:
        raise SystemExit(f"runner failed while measuring memory: {process.stderr.read()[-2000:]}")
    return peak / 2**20


# -- the report ---------------------------------------------------------------------
INFERENCER = "MMPoseInferencer (detector + pose)"
COLD = {"onnxruntime": "runner cold, backend=onnxruntime", "openvino": "runner cold, backend=openvino (f32)",
        "bf16": "runner cold, backend=openvino backend.precision=bf16"}
LIMIT = {"onnxruntime": "limit: forward only, ONNX Runtime", "openvino": "limit: forward only, OpenVINO f32",
         "bf16": "limit: forward only, OpenVINO bf16"}


def contenders(bench: Bench) -> dict:
    return {
        INFERENCER: bench.mmpose_inferencer,
        "topdown_demo_with_mmdet loop": bench.topdown_demo_loop,
        "runner cold, backend=pytorch": lambda: bench.runner("pytorch"),
        COLD["onnxruntime"]: lambda: bench.runner("onnxruntime"),
        COLD["openvino"]: lambda: bench.runner("openvino"),
        COLD["bf16"]: lambda: bench.runner("openvino", precision="bf16"),
        "runner warm (all cached)": bench.runner_warm,
        "runner 8-job sweep (4 bbox_thr x 2 kpt_thr)": bench.sweep,
        "limit: forward only, PyTorch": lambda: bench.limit("pytorch"),
        LIMIT["onnxruntime"]: lambda: bench.limit("onnxruntime"),
        LIMIT["openvino"]: lambda: bench.limit("openvino"),
        LIMIT["bf16"]: lambda: bench.limit("openvino", "bf16"),
        "detection only: inference_detector loop": bench.detector_loop,
        "detection only: runner (onnxruntime)": lambda: bench.runner("onnxruntime", steps="[download,detect]"),
    }


def measure(bench: Bench, repeats: int, bf16: bool) -> dict:
    """Medians of interleaved rounds over every contender, and the ratios."""
    runs = contenders(bench)
    if not bf16:  # this CPU has no native bf16: OpenVINO refuses it (say so, do not time an emulation)
        runs = {k: v for k, v in runs.items() if "bf16" not in k}
    print(f"warming up on {bench.folder.name} ({len(bench.paths)} images, {bench.threads} threads) ...", flush=True)
    bench.record_inputs()
    for name, run in runs.items():  # build models, export networks, fill the warm cache (not timed)
        if name != "runner warm (all cached)":
            run()
        if name == COLD["onnxruntime"]:
            bench.warm_cache = bench.last_cache
    times: dict[str, list[float]] = {name: [] for name in runs}
    boxes: dict[str, int | None] = {}
    names = list(runs)
    for round_ in range(repeats):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            start = time.perf_counter()
            boxes[name] = runs[name]()
            times[name].append(time.perf_counter() - start)
        print(f"{bench.folder.name}: round {round_ + 1}/{repeats} done", flush=True)
    median = {name: statistics.median(t) for name, t in times.items()}
    cold = median[COLD["onnxruntime"]]
    ratios = {
        "cold_vs_inferencer": median[INFERENCER] / cold,
        "cold_vs_limit": cold / median[LIMIT["onnxruntime"]],
        "openvino_vs_limit": median[COLD["openvino"]] / median[LIMIT["openvino"]],
        "warm_vs_cold": median["runner warm (all cached)"] / cold,
        "sweep_vs_cold": median["runner 8-job sweep (4 bbox_thr x 2 kpt_thr)"] / cold,
    }
    if bf16:
        ratios["bf16_vs_inferencer"] = median[INFERENCER] / median[COLD["bf16"]]
        ratios["bf16_vs_limit"] = median[COLD["bf16"]] / median[LIMIT["bf16"]]
    return {"images": len(bench.paths), "seconds_median": median, "seconds_all": times, "boxes": boxes,
            "ratios": ratios, "targets": targets(ratios)}


def targets(ratios: dict) -> dict:
    return {k: {"means": TARGETS[k][0], "target": f"{TARGETS[k][1]} {TARGETS[k][2]}", "value": round(v, 3),
                "met": v >= TARGETS[k][2] if TARGETS[k][1] == ">=" else v <= TARGETS[k][2]}
            for k, v in ratios.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DATA / "coco", help="folder of .jpg images")
    parser.add_argument("--video", type=Path, default=DATA / "video" / "demo.mp4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--skip-memory", action="store_true", help="no 100/1000-frame runs")
    parser.add_argument("--no-mixed", action="store_true", help="only the shared images, not the mixed-size folder")
    opts = parser.parse_args(argv)
    from runner.backends.openvino import capabilities
    from runner.checkpoints.safe_load import install_allow_list
    from runner.console import silence_library_noise
    from runner.models import loading
    silence_library_noise()
    install_allow_list()  # MMPose's own loaders read the checkpoints with weights_only too
    # every contender's models stay loaded between rounds, as MMPoseInferencer's do
    loading.load_model = functools.lru_cache(maxsize=64)(loading.load_model.__wrapped__)
    torch.set_num_threads(opts.threads)
    work = Path(tempfile.mkdtemp(prefix="pose-runner-bench-"))
    ckpt = checkpoints(ROOT / ".cache" / "bench-checkpoints")
    bf16 = "BF16" in capabilities()
    folders = {"shared images": input_folder(opts.images, opts.video, work)}
    if not opts.no_mixed:
        folders["mixed sizes"] = mixed_folder(opts.images, opts.video, work)
    # each folder its own work folder: no run may find another folder's cache entries
    results = {name: measure(Bench(ckpt, folder, work / "runs" / folder.name, opts.threads), opts.repeats, bf16)
               for name, folder in folders.items()}

    memory = {}
    if not opts.skip_memory:
        for frames in (100, 1000):
            video = long_video(opts.video, frames, work / f"video{frames}.mp4")
            memory[frames] = peak_rss_mb([
                "recipe=body_rtmpose", f"input={video}", "detect/model=whole_image", f"pose/model={POSE}",
                f"+download.checkpoints.{POSE}={ckpt[POSE]}", f"cache.dir={work / f'mem{frames}'}",
                f"backend.dir={work / 'runs' / 'inputs' / 'onnx'}", f"hydra.run.dir={work / f'memout{frames}'}"])
    report = {
        "command": "python -m benchmarks.compare " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": opts.threads,
                    "python": platform.python_version(), "torch": torch.__version__, "device": "cpu",
                    "openvino_capabilities": capabilities()},
        "repeats": opts.repeats, "bbox_thr": BBOX_THR, "models": {"detector": DETECTOR, "pose": POSE},
        "folders": results, "peak_rss_mb": memory,
        "memory_target": targets({"rss_1000_vs_100": memory[1000] / memory[100]}) if memory else {},
    }
    publish(opts.out, "compare", report, markdown(report))


def publish(folder: Path, name: str, report: dict, text: str) -> None:
    """A benchmark's results: NAME.json (the numbers), NAME.md (the table), printed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2))
    (folder / f"{name}.md").write_text(text)
    print(text)


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [f"{machine['threads']} threads, {machine['cpu']}; medians of {report['repeats']} interleaved rounds; "
             f"detector {report['models']['detector']}, pose {report['models']['pose']}, "
             f"bbox_thr {report['bbox_thr']}"]
    for folder, result in report["folders"].items():
        median, boxes, images = result["seconds_median"], result["boxes"], result["images"]
        lines += ["", f"**{folder}** ({images} images)", "",
                  "| contender | median s | images/s | boxes | speed vs MMPoseInferencer |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for name, seconds in median.items():
            lines.append(f"| {name} | {seconds:.2f} | {images / seconds:.2f} | "
                         f"{boxes.get(name) if boxes.get(name) is not None else '-'} | "
                         f"{median[INFERENCER] / seconds:.2f}x |")
        lines += ["", "| target | means | value | met |", "| --- | --- | ---: | --- |"]
        for key, t in result["targets"].items():
            lines.append(f"| {key} {t['target']} | {t['means']} | {t['value']:.3f} | {'yes' if t['met'] else 'no'} |")
    if report["peak_rss_mb"]:
        lines += ["", "| frames | peak RSS MB |", "| ---: | ---: |"]
        lines += [f"| {k} | {v:.0f} |" for k, v in report["peak_rss_mb"].items()]
        for key, t in report["memory_target"].items():
            lines.append(f"\n{key} {t['target']}: {t['value']:.3f} ({'met' if t['met'] else 'not met'})")
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()

"""Side-by-side speed and memory: pose-runner against MMPose's own inference.

    python -m benchmarks.compare [--images DIR] [--video FILE] [--repeats 3]

Every contender gets the same images, the same checkpoints (RTMDet-m person +
RTMPose-m body8, made locally once from their configs: the official ones cannot
be downloaded here), the same device and thread count. Repetitions are
interleaved (each round runs every contender once, in a rotated order) and the
table reports medians. Untrained detectors find arbitrary boxes, but the runner
matches MMPose's detections exactly (tests/test_body_rtmpose.py), so every
contender sees the same boxes; the box column says how many.

Writes benchmarks/results/compare.{json,md} (or --out)."""
from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DETECTOR, POSE = "rtmdet_m_person", "rtmpose_m"
BBOX_THR = 0.8  # keeps the untrained detector's boxes to a few per image (113 on the COCO four)
TARGETS = {  # name: (ratio, comparison, bound, what it means)
    "cold_vs_inferencer": ("MMPoseInferencer time / runner cold time", ">=", 2.0),
    "cold_vs_limit": ("runner cold time / ONNX Runtime forward-only time", "<=", 1.15),
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
    """The images, plus every frame of the video (PNG: lossless, so all contenders
    decode the same pixels)."""
    folder = work / "inputs"
    folder.mkdir(exist_ok=True)
    for path in sorted(images.glob("*.jpg")):
        (folder / path.name).write_bytes(path.read_bytes())
    capture = cv2.VideoCapture(str(video))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        cv2.imwrite(str(folder / f"{video.stem}_{index:04d}.png"), frame)
        index += 1
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
        from runner.models.loading import resolve_config_path
        from runner.models.registry import load_entry
        self.ckpt, self.folder, self.work, self.threads = ckpt, folder, work, threads
        self.det_config = str(resolve_config_path(load_entry(DETECTOR).config))
        self.pose_config = str(resolve_config_path(load_entry(POSE).config))
        self.paths = sorted(str(p) for p in folder.iterdir())
        self.runs = 0
        self._inferencer = self._models = self._limits = None

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
               bbox_thr: float = BBOX_THR):
        import runner
        self.runs += 1
        cache = cache or self.work / "cache" / f"{self.runs}"
        args = [f"detect/model={DETECTOR}", f"pose/model={POSE}", f"cache.dir={cache}",
                f"backend.dir={self.work / 'onnx'}", f"backend={backend}", f"detect.bbox_thr={bbox_thr}",
                f"+download.checkpoints.{DETECTOR}={self.ckpt[DETECTOR]}",
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

    # the limit: forward passes only, on pre-decoded, pre-batched tensors
    def limit_inputs(self):
        if self._limits is None:
            from runner.models.loading import load_model
            from runner.models.mmdet_detector import MMDetDetector, select_boxes
            from runner.models.topdown import TopdownEstimator
            from runner.models.registry import load_entry
            torch_det, torch_pose = (load_model(r, str(load_entry(n).config), str(self.ckpt[n]), n, "cpu")
                                     for r, n in (("mmdet", DETECTOR), ("mmpose", POSE)))
            images = [cv2.imread(p) for p in self.paths]
            detector = MMDetDetector(torch_det)
            prepared = [detector.preprocess(i) for i in images]
            det_batch = torch_det.data_preprocessor({"inputs": [p["inputs"] for p in prepared],
                                                     "data_samples": [p["data_samples"] for p in prepared]})["inputs"]
            raw = detector.predict(images)
            estimator = TopdownEstimator(torch_pose)
            crops = [estimator.preprocess(img, box) for img, r in zip(images, raw)
                     for box in select_boxes(r, [0], BBOX_THR, 0.3)[0]]
            pose_batch = torch_pose.data_preprocessor({"inputs": [c["inputs"] for c in crops],
                                                       "data_samples": [c["data_samples"] for c in crops]})["inputs"]
            self._limits = det_batch, pose_batch
        return self._limits

    def limit(self, backend: str):
        from runner.models.loading import load_model
        from runner.models.registry import load_entry
        det_batch, pose_batch = self.limit_inputs()
        nets = []
        for registry, name in (("mmdet", DETECTOR), ("mmpose", POSE)):
            entry = load_entry(name)
            model = load_model(registry, str(entry.config), str(self.ckpt[name]), name, "cpu", backend,
                               str(self.work / "onnx"), tuple(entry.input_size))
            nets.append((lambda m: (lambda x: m.extract_feat(x).outputs))(model) if backend == "onnxruntime"
                        else model._forward)
        # the passes the model's test config asks for: RTMPose's flip test runs
        # every crop twice (as is, and mirrored), in MMPose and in the runner alike
        flip = bool(model.test_cfg.get("flip_test"))
        with torch.no_grad():
            for start in range(0, len(det_batch), 4):
                nets[0](det_batch[start:start + 4])
            for start in range(0, len(pose_batch), 32):
                crops = pose_batch[start:start + 32]
                nets[1](crops)
                if flip:
                    nets[1](crops.flip(-1))
        return len(pose_batch)


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
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DATA / "coco", help="folder of .jpg images")
    parser.add_argument("--video", type=Path, default=DATA / "video" / "demo.mp4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--skip-memory", action="store_true", help="no 100/1000-frame runs")
    opts = parser.parse_args(argv)
    from runner.checkpoints.safe_load import install_allow_list
    from runner.console import silence_library_noise
    silence_library_noise()
    install_allow_list()  # MMPose's own loaders read the checkpoints with weights_only too
    torch.set_num_threads(opts.threads)
    work = Path(tempfile.mkdtemp(prefix="pose-runner-bench-"))
    ckpt = checkpoints(ROOT / ".cache" / "bench-checkpoints")
    folder = input_folder(opts.images, opts.video, work)
    bench = Bench(ckpt, folder, work, opts.threads)

    contenders = {
        "MMPoseInferencer (detector + pose)": bench.mmpose_inferencer,
        "topdown_demo_with_mmdet loop": bench.topdown_demo_loop,
        "runner cold, backend=pytorch": lambda: bench.runner("pytorch"),
        "runner cold, backend=onnxruntime": lambda: bench.runner("onnxruntime"),
        "runner warm (all cached)": bench.runner_warm,
        "runner 8-job sweep (4 bbox_thr x 2 kpt_thr)": bench.sweep,
        "limit: forward only, PyTorch": lambda: bench.limit("pytorch"),
        "limit: forward only, ONNX Runtime": lambda: bench.limit("onnxruntime"),
        "detection only: inference_detector loop": bench.detector_loop,
        "detection only: runner (onnxruntime)": lambda: bench.runner(
            "onnxruntime", steps="[download,detect]"),
    }
    # warm-up: build models, export ONNX, fill the warm cache (not timed)
    print(f"warming up ({len(bench.paths)} images, {opts.threads} threads) ...", flush=True)
    for name, run in contenders.items():
        if name.startswith("runner warm"):
            continue
        run()
        if name == "runner cold, backend=onnxruntime":
            bench.warm_cache = bench.last_cache
    times: dict[str, list[float]] = {name: [] for name in contenders}
    boxes: dict[str, int | None] = {}
    names = list(contenders)
    for round_ in range(opts.repeats):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            start = time.perf_counter()
            boxes[name] = contenders[name]()
            times[name].append(time.perf_counter() - start)
        print(f"round {round_ + 1}/{opts.repeats} done", flush=True)
    median = {name: statistics.median(t) for name, t in times.items()}

    memory = {}
    if not opts.skip_memory:
        for frames in (100, 1000):
            video = long_video(opts.video, frames, work / f"video{frames}.mp4")
            memory[frames] = peak_rss_mb([
                "recipe=body_rtmpose", f"input={video}", "detect/model=whole_image", f"pose/model={POSE}",
                f"+download.checkpoints.{POSE}={ckpt[POSE]}", f"cache.dir={work / f'mem{frames}'}",
                f"backend.dir={work / 'onnx'}", f"hydra.run.dir={work / f'memout{frames}'}"])

    inferencer = median["MMPoseInferencer (detector + pose)"]
    cold = median["runner cold, backend=onnxruntime"]
    ratios = {
        "cold_vs_inferencer": inferencer / cold,
        "cold_vs_limit": cold / median["limit: forward only, ONNX Runtime"],
        "warm_vs_cold": median["runner warm (all cached)"] / cold,
        "sweep_vs_cold": median["runner 8-job sweep (4 bbox_thr x 2 kpt_thr)"] / cold,
    }
    if memory:
        ratios["rss_1000_vs_100"] = memory[1000] / memory[100]
    report = {
        "command": "python -m benchmarks.compare " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": opts.threads,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "device": "cpu"},
        "images": len(bench.paths), "repeats": opts.repeats, "bbox_thr": BBOX_THR,
        "models": {"detector": DETECTOR, "pose": POSE},
        "seconds_median": median, "seconds_all": times, "boxes": boxes,
        "peak_rss_mb": memory, "ratios": ratios,
        "targets": {k: {"means": TARGETS[k][0], "target": f"{TARGETS[k][1]} {TARGETS[k][2]}",
                        "value": round(v, 3), "met": v >= TARGETS[k][2] if TARGETS[k][1] == ">=" else v <= TARGETS[k][2]}
                    for k, v in ratios.items()},
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "compare.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (opts.out / "compare.md").write_text(text)
    print(text)


def markdown(report: dict) -> str:
    median, boxes = report["seconds_median"], report["boxes"]
    reference = median["MMPoseInferencer (detector + pose)"]
    images = report["images"]
    lines = [f"{images} images, {report['machine']['threads']} threads, {report['machine']['cpu']}; "
             f"medians of {report['repeats']} interleaved rounds; detector {report['models']['detector']}, "
             f"pose {report['models']['pose']}, bbox_thr {report['bbox_thr']}", "",
             "| contender | median s | images/s | boxes | speed vs MMPoseInferencer |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, seconds in median.items():
        lines.append(f"| {name} | {seconds:.2f} | {images / seconds:.2f} | "
                     f"{boxes.get(name) if boxes.get(name) is not None else '-'} | {reference / seconds:.2f}x |")
    if report["peak_rss_mb"]:
        lines += ["", "| frames | peak RSS MB |", "| ---: | ---: |"]
        lines += [f"| {k} | {v:.0f} |" for k, v in report["peak_rss_mb"].items()]
    lines += ["", "| target | means | value | met |", "| --- | --- | ---: | --- |"]
    for key, t in report["targets"].items():
        lines.append(f"| {key} {t['target']} | {t['means']} | {t['value']:.3f} | {'yes' if t['met'] else 'no'} |")
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

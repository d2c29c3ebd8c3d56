"""The runner against rtmlib, the peer a CPU user picks: whole processes, from
start to every result written, measured side by side in one run (rounds
interleaved, medians), on the same ONNX files, inputs, threads and precision.

    python -m benchmarks.peers [--repeats 5] [--threads 2]

- the detector: the TRAINED RTMDet-nano person of ../shared/weights (an
  MMDeploy end2end file, NMS inside; random detector weights would flood NMS
  and make detector timings meaningless);
- the pose model: the runner's own RTMPose-m export (made once from a locally
  made checkpoint; rtmlib loads it: input `input`, outputs simcc x / y);
- (a) a folder (the COCO four and the demo video's frames as PNG), ONNX
  Runtime f32 and OpenVINO f32 (rtmlib's OpenVINO is pinned to f32: like with
  like), flip test off (rtmlib's protocol) and on (MMPose's default);
- (b) a video (the demo's frames looped to 100), the detector every 5th frame
  (rtmlib's PoseTracker with det_frequency=5 against detect.every=5, tracking
  on in both);
- (c) time to the first result: one image, models cached;
- peak RSS of each process (every 20 ms, children included).

Writes benchmarks/results/peers.{json,md} (or --out)."""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DETECTOR = ROOT.parent / "shared" / "weights" / "rtmdet-nano_person_end2end.onnx"
POSE = "rtmpose_m"
VIDEO_FRAMES = 100
TARGETS = {  # key: (what, comparison, bound)
    "folder_ort": ("rtmlib process time / runner process time, folder, ONNX Runtime f32, flip off", ">=", 1.5),
    "folder_openvino": ("rtmlib / runner, folder, OpenVINO f32, flip off", ">=", 1.5),
    "video": ("rtmlib PoseTracker(det_frequency=5) / runner detect.every=5, ONNX Runtime f32, flip off", ">=", 1.5),
    "first_result": ("rtmlib / runner, seconds from process start to the first result written (one image, "
                     "models and exports cached, nothing else)", ">=", 1.0),
    "first_result_s": ("runner: seconds from process start to the first result written, models cached", "<=", 1.5),
    "rss_over_rtmlib_mb": ("runner peak RSS - rtmlib peak RSS (MB), folder, ONNX Runtime", "<=", 200),
}


def pose_export(work: Path) -> tuple[Path, Path]:
    """(a locally made RTMPose-m checkpoint, the runner's ONNX export of it)."""
    from benchmarks.compare import checkpoints
    ckpt = checkpoints(ROOT / ".cache" / "bench-checkpoints", names=(POSE,))[POSE]
    runner_process(["recipe=body_rtmpose", f"input={DATA / 'sunglasses.jpg'}", "detect/model=whole_image",
                    f"pose/model={POSE}", f"+download.checkpoints.{POSE}={ckpt}", f"cache.dir={work / 'made'}",
                    f"backend.dir={work / 'onnx'}", "backend=onnxruntime", f"hydra.run.dir={work / 'made-run'}"])
    (export,) = [p for p in (work / "onnx").glob("rtmpose-m*.onnx") if ".ort-" not in p.name]  # not ORT's graph
    return ckpt, export


def runner_process(args: list[str]) -> list[str]:
    command = [sys.executable, "-m", "runner", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"runner failed: {done.stderr[-2000:]}")
    return command


def timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB of the process and its children) of one run."""
    import psutil
    start = time.perf_counter()
    # Both sides as a user runs them: Python keeps bytecode (an environment that says
    # PYTHONDONTWRITEBYTECODE would recompile the runner's own modules on every run, while
    # rtmlib's were compiled by pip at install)
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**environ, **(env or {})})
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            rss = watched.memory_info().rss + sum(c.memory_info().rss for c in watched.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"{' '.join(command[:4])} failed: {process.stderr.read()[-2000:]}")
    return seconds, peak / 2**20


def frames_folder(work: Path) -> Path:
    from benchmarks.compare import input_folder
    return input_folder(DATA / "coco", DATA / "video" / "demo.mp4", work)


def contenders(work: Path, ckpt: Path, export: Path, threads: int) -> dict[str, callable]:
    from benchmarks.compare import long_video
    folder, one = frames_folder(work), DATA / "coco" / "000000000785.jpg"
    video = long_video(DATA / "video" / "demo.mp4", VIDEO_FRAMES, work / "walk.mp4")
    runs = iter(range(10**6))

    def runner(source, *more):
        n = next(runs)
        return [sys.executable, "-m", "runner", "recipe=body_rtmpose", f"input={source}", "detect/model=onnx",
                f"detect.model.path={DETECTOR}", f"pose/model={POSE}", f"+download.checkpoints.{POSE}={ckpt}",
                f"cache.dir={work / 'cache'}", "cache.refresh=true", f"backend.dir={work / 'onnx'}",
                f"device.threads={threads}", f"hydra.run.dir={work / 'runs' / str(n)}", "export.coco_results=false",
                *more]

    def rtmlib(kind, source, *more):
        return [sys.executable, str(ROOT / "benchmarks" / "rtmlib_run.py"), kind, str(source),
                str(work / "peer" / str(next(runs))), "--det", str(DETECTOR), "--pose", str(export),
                "--threads", str(threads), *more]

    no_flip = "pose.flip_test=false"
    return {
        "runner folder ORT f32, flip off": lambda: runner(folder, "backend=onnxruntime", no_flip),
        "rtmlib folder ORT f32": lambda: rtmlib("folder", folder),
        "runner folder ORT f32, flip on": lambda: runner(folder, "backend=onnxruntime"),
        "runner folder OpenVINO f32, flip off": lambda: runner(folder, "backend=openvino", no_flip),
        "rtmlib folder OpenVINO f32": lambda: rtmlib("folder", folder, "--backend", "openvino"),
        # every_kpt_thr=0: boxes from all of the previous frame's keypoints, as rtmlib's pose_to_bbox makes them
        "runner video every 5, ORT, flip off": lambda: runner(video, "backend=onnxruntime", no_flip, "detect.every=5",
                                                              "detect.every_kpt_thr=0", "track.enabled=true"),
        "rtmlib video PoseTracker(det_frequency=5), ORT": lambda: rtmlib("video", video, "--det-every", "5"),
        "runner one image (first result)": lambda: runner(one, "backend=onnxruntime", no_flip),
        "rtmlib one image (first result)": lambda: rtmlib("folder", _single(work, one)),
    }


def _single(work: Path, image: Path) -> Path:
    folder = work / "single"
    folder.mkdir(exist_ok=True)
    shutil.copy(image, folder / image.name)
    return folder


def measure(repeats: int, threads: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="pose-runner-peers-"))
    ckpt, export = pose_export(work)
    runs = contenders(work, ckpt, export, threads)
    for make in runs.values():  # warm-up: caches, exports, the OS's file cache (not timed)
        timed(make())
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    rss: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            s, mb = timed(runs[name]())
            seconds[name].append(s)
            rss[name].append(mb)
        print(f"round {round_ + 1}/{repeats} done", flush=True)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    peak = {k: max(v) for k, v in rss.items()}
    ratios = {
        "folder_ort": median["rtmlib folder ORT f32"] / median["runner folder ORT f32, flip off"],
        "folder_ort_flip_on": median["rtmlib folder ORT f32"] / median["runner folder ORT f32, flip on"],
        "folder_openvino": median["rtmlib folder OpenVINO f32"] / median["runner folder OpenVINO f32, flip off"],
        "video": median["rtmlib video PoseTracker(det_frequency=5), ORT"] /
        median["runner video every 5, ORT, flip off"],
        "first_result": median["rtmlib one image (first result)"] / median["runner one image (first result)"],
        "first_result_s": median["runner one image (first result)"],
        "rss_over_rtmlib_mb": peak["runner folder ORT f32, flip off"] - peak["rtmlib folder ORT f32"],
    }
    shutil.rmtree(work, ignore_errors=True)
    return {"seconds_median": median, "seconds_all": seconds, "peak_rss_mb": peak, "ratios": ratios,
            "targets": {k: {"means": TARGETS[k][0], "target": f"{TARGETS[k][1]} {TARGETS[k][2]}",
                            "value": round(v, 3), "met": v >= TARGETS[k][2] if TARGETS[k][1] == ">=" else
                            v <= TARGETS[k][2]} for k, v in ratios.items() if k in TARGETS}}


def markdown(report: dict) -> str:
    lines = [f"{report['threads']} threads, {report['cpu']}; medians of {report['repeats']} interleaved rounds; "
             f"detector {DETECTOR.name} (trained), pose {POSE} (the runner's export, locally made weights)", "",
             "| process | median s | peak RSS MB |", "| --- | ---: | ---: |"]
    for name, seconds in report["seconds_median"].items():
        lines.append(f"| {name} | {seconds:.2f} | {report['peak_rss_mb'][name]:.0f} |")
    lines += ["", "| ratio | means | value | target | met |", "| --- | --- | ---: | --- | --- |"]
    for key, value in report["ratios"].items():
        target = report["targets"].get(key)
        lines.append(f"| {key} | {TARGETS[key][0] if key in TARGETS else 'flip test on, for comparison'} | "
                     f"{value:.3f} | {target['target'] if target else '-'} | "
                     f"{('yes' if target['met'] else 'no') if target else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    opts = parser.parse_args(argv)
    if not (ROOT / ".cache" / "bench-libs" / "rtmlib").is_dir():
        raise SystemExit("rtmlib is not installed for the benchmarks: make bench (installs it into .cache/bench-libs)")
    from benchmarks.compare import _cpu_name, publish
    report = {"cpu": _cpu_name(), "threads": opts.threads, "repeats": opts.repeats,
              "python": platform.python_version(), **measure(opts.repeats, opts.threads)}
    publish(opts.out, "peers", report, markdown(report))


if __name__ == "__main__":
    main()

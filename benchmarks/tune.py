"""What tuning costs: an Optuna search (hydra/sweeper=tune, 50 trials over
detect.bbox_thr, detect.nms_thr and the pose model) against one cold run, in
seconds and in model calls (images through the detector, crops through a pose
model), on the same labelled images.

    python -m benchmarks.tune [--trials 50] [--images DIR --ann-file FILE]

Every run is a `python -m runner` process with its own empty stage cache, as a
user would start it; ONNX exports are made once beforehand (a one-time cost per
checkpoint, not a tuning cost). Model calls come from the manifests' `computed`
counts, which the tests check against forwards counted at the models. Writes
benchmarks/results/tune.{json,md}."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.compare import DATA, ROOT, _cpu_name, checkpoints, publish
from runner.console import silence_library_noise

DETECTOR = "rtmdet_m_person"


def search_space() -> list[str]:
    """The pose models the shipped tune config chooses from."""
    params = yaml.safe_load((ROOT / "conf" / "hydra" / "sweeper" / "tune.yaml").read_text())["params"]
    return [m.strip() for m in params["pose/model"].removeprefix("choice(").removesuffix(")").split(",")]


def runner_process(args: list[str], work: Path) -> tuple[float, list[dict]]:
    """Wall seconds of one `python -m runner` process and its jobs' manifests."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"benchmark run failed:\n{done.stderr[-3000:]}")
    return seconds, [json.loads(p.read_text()) for p in sorted(work.glob("**/manifest.json"))]


def calls(manifests: list[dict]) -> dict[str, int]:
    return {stage: sum(m["stages"].get(stage, {}).get("computed", 0) for m in manifests)
            for stage in ("detect", "pose")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--images", type=Path, default=DATA / "coco")
    parser.add_argument("--ann-file", type=Path, default=DATA / "coco" / "test_coco.json")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    opts = parser.parse_args(argv)
    silence_library_noise()
    models = search_space()
    ckpt = checkpoints(ROOT / ".cache" / "bench-checkpoints", (DETECTOR, *models))
    work = Path(tempfile.mkdtemp(prefix="pose-runner-tune-"))
    common = [f"recipe=body_rtmpose", f"input={opts.images}", f"eval.ann_file={opts.ann_file}",
              f"detect/model={DETECTOR}", f"backend.dir={work / 'onnx'}",
              *[f"+download.checkpoints.{n}={p}" for n, p in ckpt.items()]]
    for model in models:  # exports, once per checkpoint: not a tuning cost
        runner_process([*common, f"pose/model={model}", f"cache.dir={work / 'warmup'}",
                        f"hydra.run.dir={work / 'warmup-out' / model}"], work / "warmup-out" / model)

    cold = {}
    for model in models:
        seconds, manifests = runner_process([*common, f"pose/model={model}", f"cache.dir={work / 'cold' / model}",
                                             f"hydra.run.dir={work / 'cold-out' / model}"], work / "cold-out" / model)
        cold[model] = {"seconds": seconds, "calls": calls(manifests),
                       "AP": manifests[0]["metrics"]["values"]["AP"]}
    seconds, manifests = runner_process(["-m", "hydra/sweeper=tune", f"hydra.sweeper.n_trials={opts.trials}",
                                         *common, f"cache.dir={work / 'tune'}",
                                         f"hydra.sweep.dir={work / 'tune-out'}"], work / "tune-out")
    tuned = {"seconds": seconds, "calls": calls(manifests), "trials": len(manifests),
             "best": yaml.safe_load((work / "tune-out" / "optimization_results.yaml").read_text())}
    default = cold["rtmpose_m"] if "rtmpose_m" in cold else next(iter(cold.values()))
    every = {"seconds": sum(c["seconds"] for c in cold.values()),
             "calls": {k: sum(c["calls"][k] for c in cold.values()) for k in ("detect", "pose")}}
    report = {
        "command": "python -m benchmarks.tune " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpu": _cpu_name()}, "images": str(opts.images), "detector": DETECTOR, "pose_models": models,
        "cold": cold, "tuned": tuned,
        "ratios": {"tuned_vs_one_cold_run_seconds": tuned["seconds"] / default["seconds"],
                   "tuned_vs_one_cold_run_calls": sum(tuned["calls"].values()) / sum(default["calls"].values()),
                   "tuned_vs_every_model_once_seconds": tuned["seconds"] / every["seconds"],
                   "tuned_vs_every_model_once_calls": sum(tuned["calls"].values()) / sum(every["calls"].values())},
    }
    publish(opts.out, "tune", report, markdown(report, default_model="rtmpose_m" if "rtmpose_m" in cold else models[0]))


def markdown(report: dict, default_model: str) -> str:
    cold, tuned, r = report["cold"], report["tuned"], report["ratios"]
    lines = [f"{report['machine']['cpu']}; images {report['images']}; detector {report['detector']}", "",
             "| run | seconds | detector images | pose crops |", "| --- | ---: | ---: | ---: |"]
    for model, c in cold.items():
        lines.append(f"| one cold run, pose/model={model} | {c['seconds']:.1f} | {c['calls']['detect']} | "
                     f"{c['calls']['pose']} |")
    lines.append(f"| Optuna search, {tuned['trials']} trials (hydra/sweeper=tune) | {tuned['seconds']:.1f} | "
                 f"{tuned['calls']['detect']} | {tuned['calls']['pose']} |")
    lines += ["", f"- tuned / one cold run (pose/model={default_model}): "
              f"{r['tuned_vs_one_cold_run_seconds']:.2f}x the seconds, {r['tuned_vs_one_cold_run_calls']:.2f}x the "
              "model calls",
              f"- tuned / every candidate model run once cold: {r['tuned_vs_every_model_once_seconds']:.2f}x the "
              f"seconds, {r['tuned_vs_every_model_once_calls']:.2f}x the model calls",
              f"- best trial: {tuned['best'].get('best_params')} ({tuned['best'].get('best_value')})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

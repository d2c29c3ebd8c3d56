"""Every feature that chooses, on real poses (issue 23, item 4): the trained
networks of ../shared/weights (BlazePose full, MediaPipe's palm and hand
models, the RTMDet-nano and YOLOX-nano person detectors) on the real data of
../shared/data.

    python -m benchmarks.real_poses [--rounds 5] [--trials 30] [--video FILE --video-frames N]
    python -m benchmarks.real_poses --only precision    # measures one part again, into the published report

- evaluation: BlazePose's COCO AP on ground-truth boxes and on each trained
  detector's; hand_mediapipe's PCK@0.2 on OneHand10K and FreiHAND;
- a sweep across model families (pose/model=blazepose_full,rtmpose_m, the
  latter with locally made weights): its report's ranking;
- tuning: hydra/sweeper=tune over detect.bbox_thr and detect.nms_thr with
  BlazePose fixed: the best AP against the defaults', its seconds and model
  calls against one cold run (each its own process and empty cache), and the
  best AP of an exhaustive grid over the same space (what a search can find);
- motion, on demo.mp4 (and on any --video): why detect.every=5 ran the
  detector; track ids against the people in view; jitter before and after
  One-Euro and Butterworth;
- reduced precision: OpenVINO int8 (NNCF, calibrated on every shared image
  and the demo video's frames) of BlazePose and of each detector, AP against
  float32, and seconds per crop / image of each network in float32 (ONNX
  Runtime, OpenVINO) and int8, in interleaved rounds (medians). bf16 where the
  CPU has it natively (this project's machines: no).

Writes benchmarks/results/real_poses.{json,md}."""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.compare import ROOT, _cpu_name, checkpoints, publish

DATA = ROOT.parent / "shared" / "data"
WEIGHTS = ROOT.parent / "shared" / "weights"
COCO, COCO_GT = DATA / "coco", DATA / "coco" / "test_coco.json"
DEMO = DATA / "video" / "demo.mp4"
BLAZEPOSE = WEIGHTS / "blazepose_landmark_full.onnx"
BLAZEPOSE_ARGS = ["pose/model=blazepose_full", f"pose.model.path={BLAZEPOSE}"]
DETECTORS = {  # name -> (its file, the overrides that run it)
    "RTMDet-nano": (WEIGHTS / "rtmdet-nano_person_end2end.onnx", "detect/model=onnx"),
    "YOLOX-nano": (WEIGHTS / "yolox-nano_humanart_person_end2end.onnx", "detect/model=onnx_yolox"),
}
CALIBRATION_SOURCES = ("coco", "onehand10k", "freihand", "interhand2.6m")
KPT_THR = 0.3  # smooth.kpt_thr's default: the keypoints the filters and the jitter measure count


def detector_args(name: str) -> list[str]:
    path, entry = DETECTORS[name]
    return [entry, f"detect.model.path={path}"]


class Work:
    """One folder for the whole measurement: a stage cache and the exports shared by its runs."""

    def __init__(self, root: Path):
        self.root = root
        self.runs = 0

    def run(self, recipe: str, input, *overrides, cache: str = "cache"):
        import runner
        self.runs += 1
        return runner.run(recipe=recipe, input=input, output_dir=self.root / "runs" / str(self.runs), overrides=[
            f"cache.dir={self.root / cache}", f"backend.dir={self.root / 'onnx'}", *overrides])

    def process(self, *args: str) -> tuple[float, subprocess.CompletedProcess]:
        """Wall seconds of one `python -m runner` process."""
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "runner", *args, f"backend.dir={self.root / 'onnx'}"], cwd=ROOT,
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"benchmark run failed:\n{done.stderr[-3000:]}")
        return time.perf_counter() - start, done


def metrics(result, *names) -> dict:
    return {n: round(float(result.metrics["values"][n]), 4) for n in names}


# -- evaluation --------------------------------------------------------------------------------
def evaluation(work: Work) -> dict:
    body = {"ground-truth boxes": work.run("body_rtmpose", COCO, *BLAZEPOSE_ARGS, "detect/model=gt",
                                           f"eval.ann_file={COCO_GT}")}
    for name in DETECTORS:
        body[name] = work.run("body_rtmpose", COCO, *BLAZEPOSE_ARGS, *detector_args(name), f"eval.ann_file={COCO_GT}")
    hands = {}
    for folder, gt in (("onehand10k", "test_onehand10k.json"), ("freihand", "test_freihand.json")):
        hands[folder] = work.run("hand_mediapipe", DATA / folder,
                                 f"detect.model.path={WEIGHTS / 'mediapipe_palm_detection_full.onnx'}",
                                 f"pose.model.path={WEIGHTS / 'mediapipe_hand_landmark_full.onnx'}",
                                 f"eval.ann_file={DATA / folder / gt}")
    return {"blazepose_coco": {k: {**metrics(r, "AP", "AR"), "people": sum(len(x["instances"]) for x in r.records)}
                               for k, r in body.items()},
            "hand_mediapipe": {k: metrics(r, "PCK", "AUC", "EPE", "matched_instances", "gt_instances")
                               for k, r in hands.items()}}


# -- a sweep across model families --------------------------------------------------------------
def family_sweep(work: Work, rtmpose_m: Path) -> dict:
    folder = work.root / "families"
    work.process("-m", "recipe=body_rtmpose", f"input={COCO}", f"eval.ann_file={COCO_GT}",
                 "pose/model=blazepose_full,rtmpose_m", *detector_args("RTMDet-nano"),
                 f"+download.checkpoints.blazepose_full={BLAZEPOSE}", f"+download.checkpoints.rtmpose_m={rtmpose_m}",
                 f"cache.dir={work.root / 'cache'}", f"hydra.sweep.dir={folder}")
    rows = list(csv.DictReader((folder / "sweep.csv").open()))
    best = next(line for line in (folder / "sweep.md").read_text().splitlines() if line.startswith("Best by"))
    return {"rows": [{k: r[k] for k in ("pose/model", "AP", "AR", "rank")} for r in rows], "best": best}


# -- tuning ------------------------------------------------------------------------------------
def model_calls(folder: Path) -> dict[str, int]:
    manifests = [json.loads(p.read_text()) for p in folder.glob("**/manifest.json")]
    return {s: sum(m["stages"].get(s, {}).get("computed", 0) for m in manifests) for s in ("detect", "pose")}


def tuning(work: Work, trials: int) -> dict:
    common = ["recipe=body_rtmpose", f"input={COCO}", f"eval.ann_file={COCO_GT}", *BLAZEPOSE_ARGS,
              *detector_args("RTMDet-nano")]
    work.process(*common, f"cache.dir={work.root / 'warm'}", f"hydra.run.dir={work.root / 'warm-run'}")  # imports
    seconds, _ = work.process(*common, f"cache.dir={work.root / 'tune-cold'}", f"hydra.run.dir={work.root / 'cold'}")
    default = json.loads((work.root / "cold" / "manifest.json").read_text())
    cold = {"seconds": seconds, "calls": model_calls(work.root / "cold"),
            "AP": default["metrics"]["values"]["AP"],
            "bbox_thr": default["config"]["detect"]["bbox_thr"], "nms_thr": default["config"]["detect"]["nms_thr"]}
    # pose/model given plainly is a fixed parameter: the search is over the two thresholds only
    seconds, _ = work.process("-m", "hydra/sweeper=tune", f"hydra.sweeper.n_trials={trials}", *common,
                              f"cache.dir={work.root / 'tune'}", f"hydra.sweep.dir={work.root / 'search'}")
    found = yaml.safe_load((work.root / "search" / "optimization_results.yaml").read_text())
    search = {"seconds": seconds, "calls": model_calls(work.root / "search"), "trials": trials,
              "best_AP": found["best_value"], "best_params": found["best_params"]}
    # Every setting of a grid over the same space, on the search's cache: no model runs, so this is
    # what any search could find.
    bbox = [round(x, 2) for x in np.arange(0.20, 0.901, 0.05)]
    nms = [round(x, 2) for x in np.arange(0.30, 0.901, 0.1)]
    work.process("-m", *common, f"detect.bbox_thr={','.join(map(str, bbox))}", f"detect.nms_thr={','.join(map(str, nms))}",
                 f"cache.dir={work.root / 'tune'}", f"hydra.sweep.dir={work.root / 'grid'}")
    grid = [r for r in csv.DictReader((work.root / "grid" / "sweep.csv").open())]
    aps = [float(r["AP"]) for r in grid]
    grid_best = max(aps)
    return {"cold_default": cold, "search": search,
            "grid": {"settings": len(grid), "best_AP": grid_best, "calls": model_calls(work.root / "grid"),
                     "settings_at_best": sum(a == grid_best for a in aps),
                     "settings_above_default": sum(a > cold["AP"] for a in aps),
                     "AP_values": sorted(set(round(a, 4) for a in aps))},
            "ratios": {"seconds": search["seconds"] / cold["seconds"],
                       "model_calls": sum(search["calls"].values()) / sum(cold["calls"].values())}}


# -- motion ------------------------------------------------------------------------------------
def motion(work: Work, video: Path, frames: int | None) -> dict:
    from runner import measures
    import cv2
    capture = cv2.VideoCapture(str(video))
    fps, total = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    limit = [f"max_frames={frames}"] if frames else []
    common = [*BLAZEPOSE_ARGS, *detector_args("RTMDet-nano"), "track.enabled=true", *limit]

    def predictions(result) -> list[dict]:
        return json.loads((result.out_dir / "predictions" / f"{video.name}.json").read_text())

    every1 = work.run("body_rtmpose", video, *common, "detect.every=1", cache=f"motion-{video.stem}-1")
    every5 = work.run("body_rtmpose", video, *common, "detect.every=5", cache=f"motion-{video.stem}-5")
    seen, followed = predictions(every1), predictions(every5)
    in_view = measures.people_in_view(seen)
    reasons = measures.detections(followed, 5)
    out = {"video": video.name, "fps": fps, "frames": len(seen), "frames_in_file": total,
           "people_in_view": {"per_frame_mean": float(np.mean(in_view)), "max": max(in_view),
                              "rises": sum(max(0, b - a) for a, b in zip(in_view, in_view[1:]))},
           "detect_every_5": {"reasons": {r: reasons.count(r) for r in dict.fromkeys(reasons)},
                              "detector_frames": every5.stages["detect"]["computed"],
                              "pose_crops": every5.stages["pose"]["computed"],
                              "detect_every_1_pose_crops": every1.stages["pose"]["computed"]},
           "tracks": {}}
    looser = {f"detect.every={n}, track.iou_thr=0.1": predictions(work.run(
        "body_rtmpose", video, *common, f"detect.every={n}", "track.iou_thr=0.1", cache=f"motion-{video.stem}-{n}"))
        for n in (1, 5)}  # tracking again on the cached poses: no model runs
    for name, found in (("detect.every=1", seen), ("detect.every=5", followed), *looser.items()):
        lengths = sorted(measures.tracks(found).values(), reverse=True)
        out["tracks"][name] = {"ids": len(lengths), "ids_in_every_frame": sum(n == len(found) for n in lengths),
                               "ids_of_one_frame": sum(n == 1 for n in lengths),
                               "median_frames": float(np.median(lengths))}
    # Butterworth's cutoff below the kept frames' Nyquist frequency (its default, 6 Hz, needs 12 fps or more)
    cutoff = min(6.0, round(fps / 4, 2))
    out["smoothing"] = {}
    for method, extra in (("one_euro", []), ("butterworth", [f"smooth.cutoff_hz={cutoff}"])):
        smoothed = work.run("body_rtmpose", video, *common, "detect.every=1", "smooth.enabled=true",
                            f"smooth.method={method}", *extra, "export.table=csv", cache=f"motion-{video.stem}-1")
        measured = measures.jitter(smoothed.out_dir / "tables" / f"{video.name}.csv", KPT_THR)
        out["smoothing"][method] = {**measured, "settings": extra or ["min_cutoff=1.0", "beta=0.007"],
                                    "warnings": len(smoothed.manifest.get("warnings", [])),
                                    "first_warning": (smoothed.manifest.get("warnings") or [""])[0]}
    return out


# -- reduced precision -------------------------------------------------------------------------
def calibration_folder(folder: Path) -> Path:
    """Every shared image and the demo video's frames (26 images): a fair set on these machines."""
    from runner.measures import image_folder
    return image_folder(folder, [DATA / s for s in CALIBRATION_SOURCES] + [DATA / "sunglasses.jpg"], [DEMO])


def boxes_file(records: list[dict], path: Path) -> Path:
    """A detector run's boxes as COCO results (detect/model=from_file reads them)."""
    from runner.coco import numbered_id
    path.write_text(json.dumps([{"image_id": numbered_id(r["id"]), "category_id": 1, "score": i["bbox_score"],
                                 "bbox": [i["bbox"][0], i["bbox"][1], i["bbox"][2] - i["bbox"][0],
                                          i["bbox"][3] - i["bbox"][1]]}
                                for r in records for i in r["instances"]]))
    return path


def precision(work: Work, calibration: Path) -> dict:
    from runner.backends.drift import box_drift
    from runner.backends.table import machine_precisions
    gt = f"eval.ann_file={COCO_GT}"
    int8 = ["backend=openvino", "backend.precision=int8", f"backend.calibration={calibration}"]
    rows = {}
    f32 = work.run("body_rtmpose", COCO, *BLAZEPOSE_ARGS, "detect/model=gt", gt, "backend=openvino")
    low = work.run("body_rtmpose", COCO, *BLAZEPOSE_ARGS, "detect/model=gt", gt, *int8)
    rows["BlazePose on ground-truth boxes"] = {"f32": metrics(f32, "AP")["AP"], "int8": metrics(low, "AP")["AP"]}
    for name in DETECTORS:
        detect_only = [*BLAZEPOSE_ARGS, *detector_args(name), "recipe.steps=[download,detect]"]
        boxes = {p: work.run("body_rtmpose", COCO, *detect_only, *(["backend=openvino"] if p == "f32" else int8))
                 for p in ("f32", "int8")}
        scored = {p: work.run("body_rtmpose", COCO, *BLAZEPOSE_ARGS, "detect/model=from_file",
                              f"detect.model.path={boxes_file(b.records, work.root / f'{name}-{p}.json')}", gt,
                              "backend=openvino") for p, b in boxes.items()}
        both = work.run("body_rtmpose", COCO, *BLAZEPOSE_ARGS, *detector_args(name), gt, *int8)
        drift = box_drift(boxes["f32"].records, boxes["int8"].records)
        rows[f"{name} boxes, BlazePose f32"] = {"f32": metrics(scored["f32"], "AP")["AP"],
                                               "int8": metrics(scored["int8"], "AP")["AP"],
                                               "f32_boxes_found": drift["boxes_found"],
                                               "iou_median": drift["iou_median"]}
        rows[f"{name} + BlazePose, both int8"] = {"f32": rows[f"{name} boxes, BlazePose f32"]["f32"],
                                                 "int8": metrics(both, "AP")["AP"]}
    hands = {}
    for p in ("f32", "int8"):
        hands[p] = work.run("hand_mediapipe", DATA / "onehand10k",
                            f"detect.model.path={WEIGHTS / 'mediapipe_palm_detection_full.onnx'}",
                            f"pose.model.path={WEIGHTS / 'mediapipe_hand_landmark_full.onnx'}",
                            f"eval.ann_file={DATA / 'onehand10k' / 'test_onehand10k.json'}",
                            *(["backend=openvino"] if p == "f32" else int8))
    hand = {p: metrics(r, "PCK", "matched_instances", "gt_instances") for p, r in hands.items()}
    return {"AP": rows, "hand_mediapipe_onehand10k": hand, "openvino_precisions_here": machine_precisions("openvino")}


def speed(work: Work, rtmpose_m: Path, calibration: Path, rounds: int, calls: int) -> dict:
    """Seconds per network call (one crop, or one image for a detector) of each
    network in float32 (ONNX Runtime, OpenVINO) and int8 (OpenVINO), in
    interleaved rounds: medians of the rounds' means."""
    import cv2
    from runner.backends.network import Network
    from runner.families import FAMILIES
    from runner.models.registry import load_entry
    from runner.native.preprocess import letterbox, normalize
    # RTMPose-m (locally made weights: its speed, not its accuracy) exported and quantized by a run
    work.run("body_rtmpose", COCO, "pose/model=rtmpose_m", f"pose.model.checkpoint={rtmpose_m}", "detect/model=gt",
             f"eval.ann_file={COCO_GT}", "backend=openvino", "backend.precision=int8",
             f"backend.calibration={calibration}", "pose.flip_test=false")
    onnx = work.root / "onnx"
    images = [cv2.imread(str(p)) for p in sorted(COCO.glob("*.jpg"))]
    rtmdet_norm = ([103.53, 116.28, 123.675], [57.375, 57.12, 58.395])  # the files' pre-processing
    networks = {"BlazePose full (a crop)": (BLAZEPOSE, None),
                "RTMDet-nano (an image)": (DETECTORS["RTMDet-nano"][0], ((320, 320), *rtmdet_norm)),
                "YOLOX-nano (an image)": (DETECTORS["YOLOX-nano"][0], ((416, 416), [0, 0, 0], [1, 1, 1])),
                "RTMPose-m (a crop)": (next(p for p in onnx.glob("rtmpose-m*.onnx") if ".ort-" not in p.name), None)}
    contenders, inputs = {}, {}
    for name, (path, letterboxed) in networks.items():
        (ir,) = onnx.glob(f"{path.stem}.int8-*.xml")
        ort = Network(path, "onnxruntime", 2)
        if path == BLAZEPOSE:  # each COCO image whole as the box
            native = FAMILIES["blazepose"].native
            inputs[name] = native.network_inputs(native.describe(load_entry("blazepose_full"), ort), images)
        elif letterboxed:  # a detector's time depends on what it finds (its NMS): real images
            size, mean, std = letterboxed
            inputs[name] = [normalize([letterbox(i, size, 114)[0]], mean, std, False) for i in images]
        else:  # a plain network: its time does not depend on the pixels
            width, height = load_entry("rtmpose_m").input_size
            inputs[name] = [np.random.default_rng(0).standard_normal((1, 3, height, width), np.float32)
                            for _ in images]
        contenders[name] = {"f32 ONNX Runtime": ort, "f32 OpenVINO": Network(path, "openvino", 2),
                            "int8 OpenVINO": Network(ir, "openvino", 2, "int8")}
    for name, runs in contenders.items():  # first calls (kernels made), not timed
        for network in runs.values():
            network(inputs[name][0])
    seconds = {n: {k: [] for k in runs} for n, runs in contenders.items()}
    order = [(n, k) for n, runs in contenders.items() for k in runs]
    for round_ in range(rounds):
        for name, kind in order[round_ % len(order):] + order[:round_ % len(order)]:
            network, batch = contenders[name][kind], inputs[name]
            start = time.perf_counter()
            for i in range(calls):
                network(batch[i % len(batch)])
            seconds[name][kind].append((time.perf_counter() - start) / calls)
    return {n: {k: statistics.median(v) for k, v in kinds.items()} for n, kinds in seconds.items()}


# -- the report --------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    ev, sweep, tune = report["evaluation"], report["family_sweep"], report["tuning"]
    lines = [f"{report['machine']['cpu']}, {report['machine']['threads']} threads; trained networks of "
             "../shared/weights on ../shared/data", "", "**Evaluation**", "",
             "| BlazePose full on | people | AP | AR |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {k} | {v['people']} | {v['AP']:.3f} | {v['AR']:.3f} |" for k, v in ev["blazepose_coco"].items()]
    lines += ["", "| hand_mediapipe on | hands matched / annotated | PCK@0.2 | AUC | EPE px |",
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {k} | {v['matched_instances']:.0f} / {v['gt_instances']:.0f} | {v['PCK']:.3f} | {v['AUC']:.3f} | "
              f"{v['EPE']:.1f} |" for k, v in ev["hand_mediapipe"].items()]
    lines += ["", "**A sweep across families** (`pose/model=blazepose_full,rtmpose_m`, RTMDet-nano boxes)", "",
              "| pose/model | AP | AR | rank |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['pose/model']} | {float(r['AP']):.3f} | {float(r['AR']):.3f} | {r['rank']} |" for r in sweep["rows"]]
    lines += ["", sweep["best"], ""]
    cold, search, grid = tune["cold_default"], tune["search"], tune["grid"]
    lines += ["**Tuning** (`hydra/sweeper=tune`, BlazePose + RTMDet-nano, over detect.bbox_thr and detect.nms_thr)", "",
              "| run | seconds | detector images | pose crops | AP |", "| --- | ---: | ---: | ---: | ---: |",
              f"| one cold run, the defaults (bbox_thr {cold['bbox_thr']}, nms_thr {cold['nms_thr']}) | "
              f"{cold['seconds']:.1f} | {cold['calls']['detect']} | {cold['calls']['pose']} | {cold['AP']:.4f} |",
              f"| Optuna search, {search['trials']} trials | {search['seconds']:.1f} | {search['calls']['detect']} | "
              f"{search['calls']['pose']} | {search['best_AP']:.4f} |",
              f"| grid of {grid['settings']} settings on the search's cache | - | {grid['calls']['detect']} | "
              f"{grid['calls']['pose']} | {grid['best_AP']:.4f} |", "",
              f"- search / one cold run: {tune['ratios']['seconds']:.2f}x the seconds, "
              f"{tune['ratios']['model_calls']:.2f}x the model calls; best found "
              f"{', '.join(f'{k}={v:.3g}' for k, v in search['best_params'].items())}",
              f"- the grid's AP values: {grid['AP_values']}; settings above the defaults' AP: "
              f"{grid['settings_above_default']}", ""]
    for m in report["motion"]:
        every = m["detect_every_5"]
        lines += [f"**Motion: {m['video']}** ({m['frames']} frames at {m['fps']:g} fps; BlazePose + RTMDet-nano)", "",
                  f"- people in view (the detector's boxes kept, detect.every=1): mean "
                  f"{m['people_in_view']['per_frame_mean']:.1f} a frame, at most {m['people_in_view']['max']} (a floor "
                  f"on the distinct people); the count rose by {m['people_in_view']['rises']} in all (people coming "
                  "into view, or found again after a frame the detector missed them)",
                  f"- detect.every=5: the detector ran on {every['detector_frames']} of {m['frames']} frames; "
                  + "; ".join(f"{k}: {v}" for k, v in every["reasons"].items())
                  + f"; pose crops {every['pose_crops']} (detect.every=1: {every['detect_every_1_pose_crops']})", "",
                  "| tracking | ids | ids in every frame | ids of one frame | median frames an id lasts |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {k} | {t['ids']} | {t['ids_in_every_frame']} | {t['ids_of_one_frame']} | {t['median_frames']:g} |"
                  for k, t in m["tracks"].items()]
        lines += ["", "| smoothing | settings | triples | jitter before px | after px | after / before |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        for method, s in m["smoothing"].items():
            if s["triples"]:
                lines.append(f"| {method} | {' '.join(s['settings'])} | {s['triples']} | {s['raw_px']:.2f} | "
                             f"{s['smoothed_px']:.2f} | {s['ratio']:.2f} |")
            else:
                lines.append(f"| {method} | {' '.join(s['settings'])} | 0 | - | - | not smoothed: "
                             f"{s['first_warning']} |")
        lines.append("")
    lines += ["**Reduced precision** (OpenVINO int8, NNCF, calibrated on "
              f"{report['calibration_images']} images; bf16: "
              f"{'native' if 'bf16' in report['precision']['openvino_precisions_here'] else 'not native on this CPU'})", "",
              "| setting | AP f32 | AP int8 | change |", "| --- | ---: | ---: | ---: |"]
    for name, row in report["precision"]["AP"].items():
        lines.append(f"| {name} | {row['f32']:.3f} | {row['int8']:.3f} | {row['int8'] - row['f32']:+.3f} |")
    hand = report["precision"]["hand_mediapipe_onehand10k"]
    lines += ["", "| hand_mediapipe on OneHand10K | hands matched / annotated | PCK@0.2 |", "| --- | ---: | ---: |"]
    lines += [f"| {p} | {h['matched_instances']:.0f} / {h['gt_instances']:.0f} | {h['PCK']:.3f} |"
              for p, h in hand.items()]
    lines += ["", "| network | f32 ONNX Runtime ms | f32 OpenVINO ms | int8 OpenVINO ms | int8 / f32 ONNX Runtime |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, s in report["speed"].items():
        lines.append(f"| {name} | {s['f32 ONNX Runtime'] * 1e3:.2f} | {s['f32 OpenVINO'] * 1e3:.2f} | "
                     f"{s['int8 OpenVINO'] * 1e3:.2f} | {s['int8 OpenVINO'] / s['f32 ONNX Runtime']:.2f} |")
    lines += ["", f"(medians of {report['rounds']} interleaved rounds of {report['calls']} calls each)"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="network calls per round and contender")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--video", type=Path, action="append", default=[], help="more videos for the motion part")
    parser.add_argument("--video-frames", type=int, default=None, help="max_frames for the --video ones")
    parser.add_argument("--only", choices=["evaluation", "sweep", "tuning", "motion", "precision"], action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    opts = parser.parse_args(argv)
    from runner.console import silence_library_noise
    silence_library_noise()
    work = Work(Path(tempfile.mkdtemp(prefix="pose-runner-real-poses-")))
    wanted = set(opts.only or ["evaluation", "sweep", "tuning", "motion", "precision"])
    rtmpose_m = checkpoints(ROOT / ".cache" / "bench-checkpoints", ("rtmpose_m",))["rtmpose_m"]
    calibration = calibration_folder(work.root / "calibration")
    report = {"command": "python -m benchmarks.real_poses " + " ".join(argv or sys.argv[1:]),
              "machine": {"cpu": _cpu_name(), "threads": len(os.sched_getaffinity(0))},
              "rounds": opts.rounds, "calls": opts.calls, "calibration_images": len(list(calibration.iterdir()))}
    steps = {"evaluation": lambda: evaluation(work), "family_sweep": lambda: family_sweep(work, rtmpose_m),
             "tuning": lambda: tuning(work, opts.trials),
             "motion": lambda: [motion(work, DEMO, None), *(motion(work, v, opts.video_frames) for v in opts.video)],
             "precision": lambda: precision(work, calibration),
             "speed": lambda: speed(work, rtmpose_m, calibration, opts.rounds, opts.calls)}
    part = {"family_sweep": "sweep", "speed": "precision"}
    for key, measure in steps.items():
        if part.get(key, key) in wanted:
            print(f"measuring {key} ...", flush=True)
            report[key] = measure()
    published = opts.out / "real_poses.json"
    if opts.only and published.is_file():  # a part measured again replaces its part of the published report
        report = {**json.loads(published.read_text()), **report,
                  "command": json.loads(published.read_text())["command"] + f"; then {report['command']}"}
    if all(key in report for key in steps):
        publish(opts.out, "real_poses", report, markdown(report))
    else:  # a part alone, nothing published to complete: its numbers
        print(json.dumps(report, indent=2, default=str))
    shutil.rmtree(work.root, ignore_errors=True)


if __name__ == "__main__":
    main()

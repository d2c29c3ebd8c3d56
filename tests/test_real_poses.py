"""Every feature that chooses, on real poses: a sweep across model families,
detect.every, tracking, smoothing and int8, run with the trained networks of
../shared/weights (BlazePose full, the RTMDet-nano person detector) on the
real images and video of ../shared/data. benchmarks/real_poses.py publishes
the same figures (BENCHMARKS.md, "Real poses").

Floors are measured values less a margin for what can move them. Another CPU
or runtime moves float32 keypoints by ~1e-3 px and boxes by ~1e-3 of their
size (tests/reference.py): far below an OKS step, a box threshold or an IoU
threshold, so a figure moves only when one instance sits within that noise of
a threshold and crosses it. The margins allow about one instance's step: one
of the 12 annotated COCO people is ~0.08 AP; one of the demo video's ~38
people-frames, one track or a few percent of jitter. int8 kernels differ
between CPUs (VNNI or not) in their rounding: the same one-instance margins."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import runner
from conftest import COCO, DATA, ROOT
from runner import measures

WEIGHTS = ROOT.parent / "shared" / "weights"
BLAZEPOSE = WEIGHTS / "blazepose_landmark_full.onnx"
DETECTOR = WEIGHTS / "rtmdet-nano_person_end2end.onnx"
COCO_GT = COCO / "test_coco.json"
DEMO = DATA / "video" / "demo.mp4"
BODY = ["pose/model=blazepose_full", f"pose.model.path={BLAZEPOSE}", "detect/model=onnx",
        f"detect.model.path={DETECTOR}"]


def test_a_sweep_across_families_ranks_trained_blazepose_first_and_untrained_rtmpose_last(
        make_checkpoint, machine_dir, tmp_path):
    """The issue's sweep on annotated images: BlazePose (trained; AP 0.461
    measured) and RTMPose-m with locally made weights (AP 0, measured), on the
    trained detector's boxes; the report ranks them and names the best job."""
    rtmpose = make_checkpoint("rtmpose_m")[0]
    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "runner", "-m", "recipe=body_rtmpose", f"input={COCO}",
                           f"eval.ann_file={COCO_GT}", "pose/model=blazepose_full,rtmpose_m", *BODY[2:],
                           f"+download.checkpoints.blazepose_full={BLAZEPOSE}",
                           f"+download.checkpoints.rtmpose_m={rtmpose}", f"cache.dir={tmp_path / 'cache'}",
                           f"cache.machine_dir={machine_dir}", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["pose/model"]: r for r in csv.DictReader((sweep / "sweep.csv").open())}
    assert (rows["blazepose_full"]["rank"], rows["rtmpose_m"]["rank"]) == ("1", "2")
    assert float(rows["blazepose_full"]["AP"]) >= 0.38  # measured 0.461; one person's step less
    assert "Best by AP (higher is better): job 0: pose/model=blazepose_full, AP" in (sweep / "sweep.md").read_text()


# -- motion: demo.mp4 (5 frames at 5 fps, a walking camera in a street, 6-9 people in view) ------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The video with the detector on every frame (tracks, One-Euro, the table),
    and with detect.every=5 (tracks), on one stage cache."""
    work = tmp_path_factory.mktemp("demo")

    def run(name, *overrides):
        result = runner.run(recipe="body_rtmpose", input=DEMO, output_dir=work / name, overrides=[
            *BODY, f"cache.dir={work / 'cache'}", "track.enabled=true", *overrides])
        return result, json.loads((result.out_dir / "predictions" / "demo.mp4.json").read_text())

    return {"every 1": run("every1", "smooth.enabled=true", "export.table=csv"),
            "every 5": run("every5", "detect.every=5")}


def test_detect_every_runs_the_detector_when_due_and_follows_people_between(demo):
    """detect.every=5: the detector on frame 0 (due); frames 1-4 follow the
    people of the frame before (every box "previous frame"), as the records show."""
    result, frames = demo["every 5"]
    assert measures.detections(frames, 5) == [measures.DUE] + [measures.FOLLOWED] * 4
    assert result.stages["detect"]["units"] == 1
    followed = [i for frame in frames[1:] for i in frame["instances"]]
    assert all(i["bbox_from"] == "previous frame" for i in followed) and len(followed) >= 28  # measured 36


def test_detect_every_runs_the_detector_again_after_a_frame_with_nobody(tmp_path):
    """The rule's other half on the real video: with detect.bbox_thr=0.95 the
    detector keeps nobody (its best person scores 0.86, measured), so there is
    nobody to follow and it runs on every frame, each time saying why."""
    result = runner.run(recipe="body_rtmpose", input=DEMO, output_dir=tmp_path / "run", overrides=[
        *BODY, f"cache.dir={tmp_path / 'cache'}", "detect.every=5", "detect.bbox_thr=0.95"])
    frames = json.loads((result.out_dir / "predictions" / "demo.mp4.json").read_text())
    assert measures.detections(frames, 5) == [measures.DUE] + [measures.NOBODY] * 4
    assert result.stages["detect"]["units"] == 5


def test_track_ids_against_the_people_in_view(demo):
    """People in view are counted from the detector's boxes with detect.every=1
    (9, 7, 6, 8, 8 measured): at least 9 distinct people. Measured ids: 14
    (every frame detected) and 15 (detect.every=5); the extra ones are far
    walkers whom the detector keeps in some frames only (4 ids of one frame).
    Bound: twice the most in view. The near walkers, in every frame, keep their
    id throughout (4 and 5 measured)."""
    in_view = measures.people_in_view(demo["every 1"][1])
    assert max(in_view) >= 8 and len(in_view) == 5
    for name in ("every 1", "every 5"):
        lengths = measures.tracks(demo[name][1]).values()
        assert max(in_view) <= len(lengths) <= 2 * max(in_view), name
        assert sum(n == 5 for n in lengths) >= 3, name


def test_one_euro_reduces_the_jitter_of_real_motion(demo):
    """Mean |second difference| of each keypoint over three consecutive frames
    of a track: 19.8 px raw, 9.8 px after One-Euro (its defaults; ratio 0.50,
    measured on 208 triples). At 5 fps a walker's own acceleration is part of
    the raw figure, which no filter should remove; the bound, 0.7, keeps a
    reduction of at least 30%."""
    result, _ = demo["every 1"]
    measured = measures.jitter(result.out_dir / "tables" / "demo.mp4.csv", kpt_thr=0.3)
    assert measured["triples"] >= 150 and measured["ratio"] <= 0.7, measured


def test_butterworth_cannot_smooth_five_frames_at_five_fps_and_says_so(demo, tmp_path):
    """The demo video is 1 s long: Butterworth's default cutoff (6 Hz) is above
    the Nyquist frequency of 5 fps, and below it, order 4 needs more than 15
    frames in a row. Every sample is kept as it is, marked and named.
    (BENCHMARKS.md measures Butterworth on a longer video.)"""
    for extra, said in (((), "at or above the Nyquist frequency (2.5 Hz)"),
                        (("smooth.cutoff_hz=1.25",), "needs more than 15 frames in a row")):
        result = runner.run(recipe="body_rtmpose", input=DEMO, output_dir=tmp_path / str(len(extra)), overrides=[
            *BODY, f"cache.dir={tmp_path / 'cache'}", "smooth.enabled=true", "smooth.method=butterworth", *extra,
            "export.table=csv"])
        assert result.manifest["warnings"] and all(said in w for w in result.manifest["warnings"])
        rows = list(csv.DictReader((result.out_dir / "tables" / "demo.mp4.csv").open()))
        assert rows and not any(r["smoothed"] == "True" for r in rows)
        kept = [r for r in rows if float(r["score"] or 0) >= 0.3]  # smooth.kpt_thr: the samples it filters
        assert kept and [r["x_smooth"] for r in kept] == [r["x"] for r in kept]


# -- int8 on trained networks -------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """Every shared image and the demo video's frames: 26 images."""
    folder = tmp_path_factory.mktemp("calibration")
    return measures.image_folder(folder, [DATA / s for s in ("coco", "onehand10k", "freihand", "interhand2.6m")]
                                 + [DATA / "sunglasses.jpg"], [DEMO])


def test_int8_detector_finds_the_people_float32_finds(calibration, tmp_path):
    """RTMDet-nano in int8 (NNCF's mixed preset, as SiLU networks need; with
    the default preset it found nobody): every float32 box found again, median
    IoU 0.97; BlazePose (float32) on the int8 boxes scores AP 0.444 against
    0.461 on the float32 ones (measured; 0.425 from the same images given to
    NNCF in another order). Floors: one box lost of the 12, IoU 0.85, and the
    issue's 0.35."""
    from runner.backends.drift import box_drift
    from runner.coco import numbered_id
    int8 = ["backend=openvino", "backend.precision=int8", f"backend.calibration={calibration}"]

    def boxes(name, *overrides):
        return runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / name, overrides=[
            *BODY, "recipe.steps=[download,detect]", f"cache.dir={tmp_path / 'cache'}",
            f"backend.dir={tmp_path / 'onnx'}", *overrides]).records

    f32, low = boxes("f32", "backend=openvino"), boxes("int8", *int8)
    drift = box_drift(f32, low)
    assert drift["boxes"] >= 10 and drift["boxes_found"] >= 0.9 and drift["iou_median"] >= 0.85, drift
    found = tmp_path / "int8_boxes.json"
    found.write_text(json.dumps([{"image_id": numbered_id(r["id"]), "category_id": 1, "score": i["bbox_score"],
                                  "bbox": [i["bbox"][0], i["bbox"][1], i["bbox"][2] - i["bbox"][0],
                                           i["bbox"][3] - i["bbox"][1]]} for r in low for i in r["instances"]]))
    scored = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "scored", overrides=[
        *BODY[:2], "detect/model=from_file", f"detect.model.path={found}", f"eval.ann_file={COCO_GT}",
        f"cache.dir={tmp_path / 'cache'}"])
    assert scored.metrics["values"]["AP"] >= 0.35


def test_int8_blazepose_loses_accuracy_even_on_a_fair_calibration_set(calibration, tmp_path):
    """BlazePose in int8 (NNCF's default preset; 'mixed' was worse) on the
    ground-truth boxes: AP 0.191 against 0.432 in float32, calibrated on the 26
    images (0.188-0.212 as NNCF is given them in other orders; 0.160 on the 4
    COCO images alone). Post-training quantization costs this network 22-24
    points; the test holds the measured floor, less about one person's step, so
    a regression shows. Pose presence above 0.5: 8 of the 14 boxes (12 in
    float32); the floor allows two fewer."""
    result = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "run", overrides=[
        *BODY[:2], "detect/model=gt", f"eval.ann_file={COCO_GT}", "backend=openvino", "backend.precision=int8",
        f"backend.calibration={calibration}", f"cache.dir={tmp_path / 'cache'}", f"backend.dir={tmp_path / 'onnx'}"])
    assert result.manifest["backend"]["precision"] == "int8"
    assert result.metrics["values"]["AP"] >= 0.13
    presence = [i["pose_presence"] for r in result.records for i in r["instances"]]
    assert sum(p > 0.5 for p in presence) >= 6 and np.isfinite(presence).all()

"""MediaPipe's trained networks as model families, on the real files of
../shared/weights and the real images and ground truth of ../shared/data:
BlazePose full on person boxes (COCO AP), the palm detector and the hand
landmark model (PCK@0.2 on OneHand10K and FreiHAND), ONNX on ONNX Runtime and
TFLite on OpenVINO agreeing, handedness against ground truth, the official
files fetched by URL and checked against their pinned sha256, and what is
refused in one line before any image is read.

Accuracy floors are measured values less a margin: on these few images one
person (of 12) or one hand (of 4 or 8) moves AP or PCK by a whole step, while
runtimes and CPUs move keypoints by ~1e-3 px (tests/reference.py), far below
any OKS or PCK threshold; the margins below allow about one instance's step."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest

import runner
from conftest import COCO, DATA, ROOT
from reference import REORDER_RTOL
from runner.errors import RunnerError

WEIGHTS = ROOT.parent / "shared" / "weights"
BLAZEPOSE, HAND, PALM = (WEIGHTS / f"{name}.onnx" for name in (
    "blazepose_landmark_full", "mediapipe_hand_landmark_full", "mediapipe_palm_detection_full"))
DETECTOR = WEIGHTS / "rtmdet-nano_person_end2end.onnx"
ONEHAND, FREIHAND = DATA / "onehand10k", DATA / "freihand"
COCO_GT = COCO / "test_coco.json"


def cli(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args, f"cache.dir={tmp_path / 'cache'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True)


def hands(*paths) -> list[str]:
    return ["recipe=hand_mediapipe", f"detect.model.path={paths[0]}", f"pose.model.path={paths[1]}"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One stage cache for the module's runs that share their models' results."""
    return tmp_path_factory.mktemp("mediapipe-cache")


def run(tmp_path, name, recipe, input, *overrides, cache=None) -> runner.pipeline.RunResult:
    return runner.run(recipe=recipe, input=input, output_dir=tmp_path / name,
                      overrides=[f"cache.dir={cache or tmp_path / 'cache'}", f"backend.dir={tmp_path / 'onnx'}",
                                 *overrides])


# -- BlazePose ----------------------------------------------------------------------------------
def test_blazepose_on_the_trained_person_detector_scores_coco_ap(tmp_path):
    """The issue's command as it stands. Measured AP 0.461 (12 people); the issue's bar is 0.35."""
    done = cli(tmp_path, "recipe=body_rtmpose", "pose/model=blazepose_full", f"pose.model.path={BLAZEPOSE}",
               "detect/model=onnx", f"detect.model.path={DETECTOR}", f"input={COCO}", f"eval.ann_file={COCO_GT}")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["values"]["AP"] >= 0.35 and metrics["images"]["matched"] == 4
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["checkpoints"]["pose"]["sha256"] == \
        "66137f818b93c4c1014007c76bf85c75e06cf8743a00c3d6025f4253b89e8b11"
    again = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "again", overrides=[
        "pose/model=blazepose_full", f"pose.model.path={BLAZEPOSE}", "detect/model=onnx",
        f"detect.model.path={DETECTOR}", f"eval.ann_file={COCO_GT}", f"cache.dir={tmp_path / 'cache'}"])
    assert [again.stages[s]["computed"] for s in ("detect", "pose", "visualize", "evaluate")] == [0, 0, 0, 0]
    assert again.metrics["values"]["AP"] == metrics["values"]["AP"]


@pytest.fixture(scope="module")
def blazepose_gt(tmp_path_factory, cache):
    """BlazePose (.onnx, ONNX Runtime) on the ground-truth boxes."""
    out = tmp_path_factory.mktemp("blazepose-gt")
    return run(out, "run", "body_rtmpose", COCO, "pose/model=blazepose_full", f"pose.model.path={BLAZEPOSE}",
               "detect/model=gt", f"eval.ann_file={COCO_GT}", cache=cache)


def test_blazepose_on_ground_truth_boxes_keeps_its_33_landmarks(blazepose_gt):
    """Measured AP 0.431 on the 12 ground-truth people (MMPose's protocol): 0.38 allows one person's step less."""
    from runner.native.blazepose import COCO_OF_BLAZEPOSE
    assert blazepose_gt.metrics["values"]["AP"] >= 0.38
    assert blazepose_gt.manifest["backend"]["name"] == "onnxruntime"
    people = [i for r in blazepose_gt.records for i in r["instances"]]
    assert len(people) == 12  # MMPose's ground-truth boxes: the annotations with keypoints (2 without are left out)
    inside = []  # per visible landmark, whether it lies in its person's box
    for person in people:
        landmarks = np.array(person["landmarks"])
        assert landmarks.shape == (33, 2) and np.array(person["world_landmarks"]).shape == (33, 3)
        np.testing.assert_array_equal(np.array(person["keypoints"]), landmarks[list(COCO_OF_BLAZEPOSE)])
        np.testing.assert_array_equal(person["keypoint_scores"],
                                      np.array(person["landmark_visibility"])[list(COCO_OF_BLAZEPOSE)])
        for name in ("landmark_visibility", "landmark_presence"):
            assert 0 <= min(person[name]) and max(person[name]) <= 1 and len(person[name]) == 33
        assert len(person["landmark_z"]) == 33 and 0 <= person["pose_presence"] <= 1
        x1, y1, x2, y2 = person["bbox"]
        visible = landmarks[np.array(person["landmark_visibility"]) > 0.5]
        inside += list((visible[:, 0] >= x1) & (visible[:, 0] <= x2) & (visible[:, 1] >= y1) & (visible[:, 1] <= y2))
    assert np.mean(inside) >= 0.85  # measured 0.96 (the least, 0.82 of one person's landmarks)
    # measured 11 of 12 above 0.5: not a sitting man seen from the side (0.29)
    assert sum(person["pose_presence"] > 0.5 for person in people) >= 10


def test_coco_results_score_each_person_by_mmposes_rescoring(blazepose_gt):
    """results_coco.json: box score (1 for ground-truth boxes) x the mean of the
    keypoint scores above 0.2, as MMPose's CocoMetric rescores; keypoints the 17 COCO ones."""
    results = json.loads((blazepose_gt.out_dir / "results_coco.json").read_text())
    people = [i for r in blazepose_gt.records for i in r["instances"]]
    assert len(results) == len(people)
    for found, person in zip(results, people):
        scores = np.array(person["keypoint_scores"])
        assert found["score"] == pytest.approx(person["bbox_score"] * scores[scores > 0.2].mean(), abs=1e-6)
        assert len(found["keypoints"]) == 17 * 3


def test_tflite_on_openvino_gives_the_keypoints_of_onnx_on_onnx_runtime(blazepose_gt, tmp_path):
    """The .tflite file picks OpenVINO by itself (backend=auto). The two files are
    one float32 network run by two runtimes, so they differ by reordered float
    sums: REORDER_RTOL of the output's scale, the crop side (landmarks are crop
    pixels), i.e. REORDER_RTOL x the region's side in image pixels. The heatmap
    refinement reads a 7-cell window and a 0.5 confidence test: a landmark within
    that noise of a cell edge or of 0.5 may be refined from another window (a
    near-tie), so at least 99% must agree (measured: all, to 5e-4 crop px)."""
    tflite = run(tmp_path, "tflite", "body_rtmpose", COCO, "pose/model=blazepose_full",
                 f"pose.model.path={BLAZEPOSE.with_suffix('.tflite')}", "detect/model=gt", f"eval.ann_file={COCO_GT}")
    assert tflite.manifest["backend"]["name"] == "openvino" and "TFLite" in tflite.manifest["backend"]["why"]
    close, count = 0, 0
    for a, b in zip(blazepose_gt.records, tflite.records):
        for x, y in zip(a["instances"], b["instances"]):
            side = max(x["bbox"][2] - x["bbox"][0], x["bbox"][3] - x["bbox"][1]) * 1.25
            gap = np.abs(np.array(x["landmarks"]) - np.array(y["landmarks"])).max(axis=1)
            close, count = close + int((gap <= REORDER_RTOL * side).sum()), count + len(gap)
            np.testing.assert_allclose(x["landmark_visibility"], y["landmark_visibility"], atol=REORDER_RTOL)
            np.testing.assert_allclose(x["world_landmarks"], y["world_landmarks"], atol=REORDER_RTOL)
    assert count == 12 * 33 and close >= 0.99 * count


def test_blazepose_follows_people_between_detections(tmp_path):
    """detect.every: boxes made from BlazePose's keypoints in the previous frame."""
    result = run(tmp_path, "video", "body_rtmpose", DATA / "video" / "demo.mp4", "pose/model=blazepose_full",
                 f"pose.model.path={BLAZEPOSE}", "detect/model=onnx", f"detect.model.path={DETECTOR}",
                 "detect.every=5", "track.enabled=true")
    assert result.stages["detect"]["computed"] == 1 and len(result.records) == 5
    followed = result.records[1:]
    assert all(r["instances"] and all(i["bbox_from"] == "previous frame" and len(i["landmarks"]) == 33
                                      for i in r["instances"]) for r in followed)


# -- MediaPipe hands ------------------------------------------------------------------------------
def test_hand_mediapipe_scores_pck_on_onehand10k(tmp_path):
    """The issue's command as it stands (with the .onnx files). Measured PCK 1.0 on
    the 4 hands; the issue's bar is 0.85. The exported box is the keypoints' extent
    grown 1.25x, so every ground-truth hand is matched (IoU >= 0.5; measured 0.61-0.85)."""
    done = cli(tmp_path, *hands(PALM, HAND), f"input={ONEHAND}", f"eval.ann_file={ONEHAND / 'test_onehand10k.json'}")
    assert done.returncode == 0, done.stderr[-2000:]
    values = json.loads((tmp_path / "run" / "metrics.json").read_text())["values"]
    assert values["PCK"] >= 0.85 and values["matched_instances"] == values["gt_instances"] == 4
    hand = json.loads((tmp_path / "run" / "predictions" / "9.jpg.json").read_text())[0]
    assert hand["handedness"] in ("left", "right") and 0.5 <= hand["handedness_score"] <= 1
    assert np.array(hand["world_keypoints"]).shape == (21, 3) and len(hand["keypoint_z"]) == 21
    assert hand["keypoint_scores"] == [hand["hand_presence"]] * 21 and hand["hand_presence"] > 0.5
    region = hand["hand_region"]
    assert region["size"] > hand["bbox"][2] - hand["bbox"][0] and -np.pi <= region["rotation"] < np.pi


def test_hands_from_the_tflite_files_on_openvino_match_the_onnx_files_on_onnx_runtime(tmp_path, cache):
    """Palm and hand landmark model, each a float32 network run by two runtimes:
    keypoints (crop pixels out of the network) agree to REORDER_RTOL of the crop,
    i.e. REORDER_RTOL x the hand region's side in image pixels. A candidate palm
    scoring within that noise of detect.bbox_thr could join one side's weighted
    NMS and not the other's; here the nearest scores 0.02 from 0.5 (measured),
    twenty times REORDER_RTOL."""
    onnx = run(tmp_path, "onnx", "hand_mediapipe", ONEHAND, f"detect.model.path={PALM}", f"pose.model.path={HAND}",
               cache=cache)
    tflite = run(tmp_path, "tflite", "hand_mediapipe", ONEHAND, f"detect.model.path={PALM.with_suffix('.tflite')}",
                 f"pose.model.path={HAND.with_suffix('.tflite')}", cache=cache)
    assert (onnx.manifest["backend"]["name"], tflite.manifest["backend"]["name"]) == ("onnxruntime", "openvino")
    compared = 0
    for a, b in zip(onnx.records, tflite.records):
        assert len(a["instances"]) == len(b["instances"]) == 1
        for x, y in zip(a["instances"], b["instances"]):
            tol = REORDER_RTOL * x["hand_region"]["size"]
            np.testing.assert_allclose(x["keypoints"], y["keypoints"], atol=tol)
            np.testing.assert_allclose(x["hand_region"]["center"], y["hand_region"]["center"], atol=tol)
            assert x["handedness"] == y["handedness"]
            compared += 1
    assert compared == 4


def test_the_rotated_hand_region_finds_the_hands_an_upright_crop_misses(tmp_path, cache):
    """FreiHAND's 8 crops: on the upright square of the ground-truth box the hand
    model sees no hand in 4 (presence ~0.01: they lie on their side); through the
    palm's rotated region it finds 3 of those 4 (presence 0.86-0.97, palm scores
    0.93-0.95, far from the 0.5 thresholds) and 6 of the 8 hands in all (no palm
    reaches 0.5 in 2 images). PCK measured 0.857 (18 of 21 keypoints per hand)."""
    gt = f"eval.ann_file={FREIHAND / 'test_freihand.json'}"
    upright = run(tmp_path, "upright", "hand_rtmpose", FREIHAND, "pose/model=mediapipe_hand",
                  f"pose.model.path={HAND}", "detect/model=gt", gt, cache=cache)
    missed = {r["id"] for r in upright.records if r["instances"][0]["hand_presence"] < 0.5}
    assert len(missed) == 4
    rotated = run(tmp_path, "rotated", "hand_mediapipe", FREIHAND, f"detect.model.path={PALM}",
                  f"pose.model.path={HAND}", gt, cache=cache)
    found = {r["id"] for r in rotated.records if any(i["hand_presence"] >= 0.5 for i in r["instances"])}
    assert len(found & missed) >= 3 and len(found) >= 6
    assert rotated.metrics["values"]["matched_instances"] >= 6 and rotated.metrics["values"]["PCK"] >= 0.8


def test_the_hand_model_on_plain_hand_boxes(tmp_path, cache):
    """Any hand box: the upright square grown 1.5x. Measured PCK 0.984 on OneHand10K's
    ground-truth boxes (the issue's 0.93-1.0 per hand): 0.9 allows one hand's step."""
    result = run(tmp_path, "boxes", "hand_rtmpose", ONEHAND, "pose/model=mediapipe_hand", f"pose.model.path={HAND}",
                 "detect/model=gt", f"eval.ann_file={ONEHAND / 'test_onehand10k.json'}", cache=cache)
    assert result.metrics["values"]["PCK"] >= 0.9
    assert all("hand_region" not in i for r in result.records for i in r["instances"])  # no palm, no region


def test_handedness_is_the_hand_of_an_unmirrored_photo(tmp_path):
    """MediaPipe's model answers for a mirrored (selfie) image; the runner says
    which hand it is in an ordinary photo. Ground truth: InterHand2.6M's single
    left and right hands, and the COCO-WholeBody hands the model is sure it sees
    (presence > 0.5; the others are 11-31 px wide and not seen)."""
    interhand = DATA / "interhand2.6m"
    data = json.loads((interhand / "test_interhand2.6m_data.json").read_text())
    names = {im["id"]: im["file_name"] for im in data["images"]}
    single = [a for a in data["annotations"] if a["hand_type"] in ("left", "right")]
    coco = json.loads((COCO / "test_coco_wholebody.json").read_text())
    boxes = [{"image_id": a["image_id"], "bbox": a[f"{side}hand_box"], "score": 1.0, "side": side}
             for a in coco["annotations"] for side in ("left", "right") if a.get(f"{side}hand_valid")]
    (tmp_path / "coco_hands.json").write_text(json.dumps({"images": coco["images"], "annotations": boxes}))
    (tmp_path / "interhand").mkdir()
    for a in single:
        shutil.copy(interhand / names[a["image_id"]], tmp_path / "interhand")
    (tmp_path / "interhand_hands.json").write_text(json.dumps({"images": data["images"], "annotations": [
        {"image_id": a["image_id"], "bbox": a["bbox"], "score": 1.0, "side": a["hand_type"]} for a in single]}))
    checked = 0
    for folder, file in ((tmp_path / "interhand", "interhand_hands.json"), (COCO, "coco_hands.json")):
        given = json.loads((tmp_path / file).read_text())
        named = {im["id"]: im["file_name"] for im in given["images"]}
        sides: dict[str, list] = {}  # per image, its hands' sides in the file's order (the boxes' order)
        for box in given["annotations"]:
            sides.setdefault(named[box["image_id"]], []).append(box["side"])
        result = run(tmp_path, f"run-{folder.name}", "hand_rtmpose", folder, "pose/model=mediapipe_hand", f"pose.model.path={HAND}",
                     "detect/model=from_file", f"detect.model.path={tmp_path / file}", "detect.bbox_thr=0")
        for record in result.records:
            assert len(record["instances"]) == len(sides[record["id"]])
            for hand, side in zip(record["instances"], sides[record["id"]]):
                if hand["hand_presence"] > 0.5:
                    assert hand["handedness"] == side, (record["id"], hand["bbox"])
                    checked += 1
    assert checked >= 4  # measured 4: InterHand2.6M's left and right, two COCO-WholeBody hands (one of each)


# -- the palm detector ----------------------------------------------------------------------------
def test_palm_anchors_and_decoding_against_an_independent_account():
    """The README of ../shared/weights: 2016 anchors, the 24x24 grid at stride 8
    two per cell, then the 12x12 grid at stride 16 six per cell, each at
    ((x + 0.5) / grid, (y + 0.5) / grid) of the 192-px input."""
    from runner.native.palm import anchors
    expected = [((x + 0.5) / grid * 192, (y + 0.5) / grid * 192) for grid, per_cell in ((24, 2), (12, 6))
                for y in range(grid) for x in range(grid) for _ in range(per_cell)]
    np.testing.assert_allclose(anchors(192), np.array(expected), atol=1e-4)
    assert len(expected) == 2016


def test_the_best_palm_lies_in_the_annotated_hand(tmp_path):
    """OneHand10K: each image's best palm (score 0.87-0.95 measured) and its 7
    keypoints lie inside the annotated hand box, and the hand region is rotated by
    the wrist -> middle finger direction."""
    from runner.backends.network import Network
    from runner.native.palm import NativePalmDetector, hand_region
    network = Network(PALM, "onnxruntime")
    detector = NativePalmDetector(network, NativePalmDetector.describe(None, network))
    gt = json.loads((ONEHAND / "test_onehand10k.json").read_text())
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    for a in gt["annotations"]:
        found = detector.predict([cv2.imread(str(ONEHAND / names[a["image_id"]]))])[0]
        x, y, w, h = a["bbox"]
        box, points = found["bboxes"][0], found["keypoints"][0]
        assert found["scores"][0] >= 0.8 and found["scores"][0] == found["scores"].max()
        assert x <= box[0] and y <= box[1] and box[2] <= x + w and box[3] <= y + h, names[a["image_id"]]
        assert ((points >= [x, y]) & (points <= [x + w, y + h])).all()
        region = hand_region(box, points)
        up = np.array([np.sin(region.rotation), -np.cos(region.rotation)])  # the region's "up" in the image
        towards = (points[2] - points[0]) / np.linalg.norm(points[2] - points[0])
        assert up @ towards > 0.999


def test_the_palm_detector_gives_any_hand_recipe_its_boxes_and_thresholds_run_no_network(tmp_path, cache):
    """detect/model=mediapipe_palm: boxes are the rotated regions' bounds;
    detect.bbox_thr and nms_thr are applied to the cached palms."""
    args = ["pose/model=mediapipe_hand", f"pose.model.path={HAND}", "detect/model=mediapipe_palm",
            f"detect.model.path={PALM}"]
    first = run(tmp_path, "first", "hand_rtmpose", ONEHAND, *args, "detect.bbox_thr=0.5", cache=cache)
    stricter = run(tmp_path, "stricter", "hand_rtmpose", ONEHAND, *args, "detect.bbox_thr=0.9", cache=cache)
    assert stricter.stages["detect"]["computed"] == 0
    assert sum(len(r["instances"]) for r in stricter.records) < sum(len(r["instances"]) for r in first.records)
    with pytest.raises(RunnerError, match="detect.bbox_thr=0.01: palms scoring below 0.05 are not kept"):
        run(tmp_path, "low", "hand_rtmpose", ONEHAND, *args, "detect.bbox_thr=0.01", cache=cache)


# -- files, backends, refusals --------------------------------------------------------------------
def test_the_official_tflite_is_fetched_by_url_checked_and_run_on_openvino(tmp_path, served_dir, server):
    """The entry's URL (here the local server serving the shared copy of the official
    file) is downloaded once, checked against the entry's sha256, and run on OpenVINO;
    a server sending another file is refused in one line, and nothing is kept."""
    shutil.copyfile(BLAZEPOSE.with_suffix(".tflite"), served_dir / "pose_landmark_full.tflite")
    shutil.copyfile(HAND.with_suffix(".tflite"), served_dir / "palm_detection_full.tflite")  # the wrong file
    boxes = ["detect/model=from_file", f"detect.model.path={COCO_GT}"]
    result = run(tmp_path, "fetched", "body_rtmpose", COCO, "pose/model=blazepose_full",
                 f"pose.model.path={server}/pose_landmark_full.tflite", *boxes)
    assert result.manifest["checkpoints"]["pose"]["origin"] == "download"
    assert result.manifest["backend"]["name"] == "openvino" and result.stages["pose"]["computed"] == 14
    with pytest.raises(RunnerError) as err:
        run(tmp_path, "wrong", "hand_mediapipe", ONEHAND, f"detect.model.path={server}/palm_detection_full.tflite",
            f"pose.model.path={HAND}")
    assert "\n" not in str(err.value) and "detect.model.sha256" in str(err.value)
    assert not list((tmp_path / "cache" / "checkpoints").glob("palm_detection_full.tflite*"))


def test_the_registry_pins_mediapipes_official_files():
    """Each entry's default is MediaPipe's official URL, and its sha256 the one of the
    shared .tflite (byte for byte the official asset, ../shared/weights/README.md)."""
    from runner.hashing import sha256_file
    from runner.models.registry import load_entry
    for name, official, shared in (("blazepose_full", "pose_landmark_full", BLAZEPOSE),
                                   ("mediapipe_hand", "hand_landmark_full", HAND),
                                   ("mediapipe_palm", "palm_detection_full", PALM)):
        entry = load_entry(name)
        assert entry.checkpoint == entry.path == f"https://storage.googleapis.com/mediapipe-assets/{official}.tflite"
        assert entry.sha256 == sha256_file(shared.with_suffix(".tflite"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PERSONS = ["detect/model=onnx", f"detect.model.path={DETECTOR}"]


@pytest.mark.parametrize("overrides,said", [
    (["recipe=hand_mediapipe", f"detect.model.path=http://127.0.0.1:{free_port()}/palm_detection_full.tflite",
      f"pose.model.path={HAND}"], "pass detect.model.path=PATH"),
    ([*PERSONS, "pose/model=blazepose_full", f"pose.model.path=http://127.0.0.1:{free_port()}/pose_landmark_full.tflite"],
     "pass pose.model.path=PATH"),
    ([*PERSONS, "pose/model=blazepose_full", f"pose.model.path={BLAZEPOSE}", "pose.flip_test=true"],
     "pose/model=blazepose_full has no flip test"),
    ([*PERSONS, "pose/model=blazepose_full", f"pose.model.path={BLAZEPOSE.with_suffix('.tflite')}",
      "backend=onnxruntime"], "backend=onnxruntime does not read TFLite files"),
    ([*PERSONS, "pose/model=blazepose_full", f"pose.model.path={HAND}"], "it is not BlazePose's landmark model"),
])
def test_what_cannot_run_is_one_line_before_any_image_is_read(tmp_path, monkeypatch, overrides, said):
    from runner.inputs import Item
    monkeypatch.setattr(Item, "image", lambda self: pytest.fail("an image was read"))
    with pytest.raises(RunnerError) as err:
        runner.run(input=COCO, output_dir=tmp_path / "run", overrides=[
            *overrides, f"cache.dir={tmp_path / 'cache'}", "download.timeout_s=2"])
    assert said in str(err.value) and "\n" not in str(err.value)


def test_int8_quantizes_a_users_network_files_once_into_the_backend_folder(tmp_path):
    """backend.precision=int8 on the shared files (whose folder is read-only): NNCF's
    int8 IR, keyed by the file's own sha256 and the calibration images, is made in
    backend.dir once and reused. Measured: 3 of the 4 OneHand10K hands found (the
    int8 palm detector misses 9.jpg's; with the same images given to NNCF in
    another order it found all 4: int8 from 4 images is that fragile), each with
    presence 0.97-0.99."""
    args = [f"detect.model.path={PALM}", f"pose.model.path={HAND}", "backend=openvino", "backend.precision=int8",
            f"backend.calibration={ONEHAND}"]
    first = run(tmp_path, "first", "hand_mediapipe", ONEHAND, *args)
    made = sorted(p.name for p in (tmp_path / "onnx").glob("*.int8-*.xml"))
    assert first.manifest["backend"]["precision"] == "int8" and len(made) == 2
    assert [p.split(".int8-")[0] for p in made] == [HAND.stem, PALM.stem]
    assert sum(i["hand_presence"] > 0.5 for r in first.records for i in r["instances"]) >= 3
    def networks() -> dict:  # the IR's .xml and .bin (their .json record's mtime marks each use)
        return {p: p.stat().st_mtime_ns for p in (tmp_path / "onnx").glob("*.int8-*") if p.suffix in (".xml", ".bin")}
    stamps = networks()
    again = run(tmp_path, "again", "hand_mediapipe", ONEHAND, *args, "cache.refresh=true")
    assert again.stages["pose"]["computed"] == first.stages["pose"]["computed"]
    assert len(stamps) == 4 and networks() == stamps  # not made again


def test_nhwc_networks_and_int8_calibration_inputs():
    """MediaPipe's networks take [1, S, S, 3]: the input size is read as NHWC, and
    each estimator's calibration inputs are what its network takes."""
    from runner.backends.network import Network
    from runner.families import FAMILIES
    from runner.models.registry import load_entry
    image = cv2.imread(str(ONEHAND / "9.jpg"))
    for name, path, size in (("blazepose_full", BLAZEPOSE, 256), ("mediapipe_hand", HAND, 224),
                             ("mediapipe_palm", PALM, 192)):
        network, entry = Network(path, "onnxruntime"), load_entry(name)
        assert network.channels_last and network.fixed_input_size() == (size, size)
        estimator = FAMILIES[str(entry.family)].native
        (calibration,) = estimator.network_inputs(estimator.describe(entry, network), [image])
        assert calibration.shape == (1, size, size, 3) and calibration.dtype == np.float32
        assert 0 <= calibration.min() and calibration.max() <= 1
        network(calibration)  # the network takes it

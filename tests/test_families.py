"""Every family of the guide through the runner: RTMO, RTMPose hand, InterNet
3D hand, RTMW and DWPose whole-body, the shortcuts, and the detector choices.
Each recipe runs end to end on ../shared/data and matches MMPose's own
inference for the same checkpoint and input. The recipes run with their
smaller variants (rtmo_s, rtmw_m, dwpose_m, RTMDet-nano): same code paths,
a fraction of the CPU time; their default models are checked by composition."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import runner
from conftest import COCO, DATA, face_file
from reference import (REORDER_RTOL, Compared, assert_instances_match, decoding_margins, load_detector,
                       load_pose_model, reference_boxes)
from runner.config import compose_config

HANDS = DATA / "onehand10k"
# The locally made hand detector boxes hands everywhere (205 boxes above 0.1 on the four
# OneHand10K images, 10 on 33.jpg): the recipes that run them all through the pose
# model take two of them (67 crops), the parity test one (10 crops)
FEW_HANDS = ("33.jpg", "1402.jpg")
INTERHAND = DATA / "interhand2.6m"
COCO_DETECTIONS = COCO / "test_coco_det_AP_H_56.json"
WHOLEBODY_PARTS = {"body": (0, 17), "feet": (17, 23), "face": (23, 91),
                   "left_hand": (91, 112), "right_hand": (112, 133)}


@pytest.fixture
def run_recipe(make_checkpoint, cache_dir, machine_dir, tmp_path):
    """run_recipe(recipe, input, *overrides) with locally made checkpoints for
    whatever models the composed recipe names, served over HTTP. The backend is
    the default one (ONNX Runtime on this CPU) unless an override says otherwise."""
    runs = iter(range(1000))

    def run(recipe, input, *overrides):
        cfg = compose_config([f"recipe={recipe}", *overrides])
        args = [f"cache.dir={cache_dir}", f"cache.machine_dir={machine_dir}", *overrides]
        for role in ("detect", "pose"):
            if role in cfg.recipe.steps and cfg[role].model.get("checkpoint"):
                path, url = make_checkpoint(str(cfg[role].model.name))
                run.paths[role] = path
                args.append(f"{role}.model.checkpoint={url}")
        return runner.run(recipe=recipe, input=input, overrides=args,
                          output_dir=tmp_path / "runs" / str(next(runs)))

    run.paths = {}
    return run


def all_instances(result) -> list[dict]:
    return [inst for record in result.records for inst in record["instances"]]


# -- every recipe end to end ------------------------------------------------------

SMALL_PERSON = ["detect/model=rtmdet_nano_person"]


@pytest.mark.parametrize("recipe,overrides,folder,keypoints", [
    ("body_rtmpose", [*SMALL_PERSON, "pose/model=rtmpose_t"], COCO, 17),
    ("human", [*SMALL_PERSON, "pose/model=rtmpose_t"], COCO, 17),
    ("body_rtmo", ["pose/model=rtmo_s"], COCO, 17),
    ("hand_rtmpose", [], FEW_HANDS, 21),
    ("hand", [], FEW_HANDS, 21),
    # whole-body networks cost 3-4x a body crop: the locally made detector's 27 boxes above 0.8, not its 171 above 0.1
    ("wholebody_rtmw", [*SMALL_PERSON, "pose/model=rtmw_m", "detect.bbox_thr=0.8"], COCO, 133),
    ("wholebody", [*SMALL_PERSON, "detect.bbox_thr=0.8"], COCO, 133),
    ("wholebody_dwpose", [*SMALL_PERSON, "pose/model=dwpose_m", "detect.bbox_thr=0.8"], COCO, 133),
    ("hand3d_internet", [], INTERHAND, 42),
])
def test_recipe_runs_end_to_end_and_a_second_run_computes_nothing(run_recipe, recipe, overrides, folder,
                                                                   keypoints, tmp_path):
    if folder == FEW_HANDS:
        (folder := tmp_path / "hands").mkdir()
        for name in FEW_HANDS:
            (folder / name).symlink_to(HANDS / name)
    if not any(o.startswith("detect.bbox_thr=") for o in overrides):
        overrides = [*overrides, "detect.bbox_thr=0.1"]  # low: every recipe finds someone with its local weights
    result = run_recipe(recipe, folder, *overrides)
    images = sorted(p.name for p in folder.glob("*.jpg"))
    assert [r["id"] for r in result.records] == images and not result.failed
    found = all_instances(result)
    assert found, f"{recipe} found nobody: the shape checks below checked nothing"
    for inst in found:
        assert np.shape(inst["keypoints"]) == (keypoints, 2)
        assert np.shape(inst["keypoint_scores"]) == (keypoints,)
        assert len(inst["bbox"]) == 4 and 0 <= inst["bbox_score"] <= 1
    out = result.out_dir
    assert sorted(p.name for p in (out / "overlays").iterdir()) == images
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [f"{i}.json" for i in images]
    saved = json.loads((out / "predictions" / f"{images[0]}.json").read_text())
    assert saved == result.records[0]["instances"]
    assert json.loads((out / "manifest.json").read_text())["recipe"] == recipe
    # Make-style: the same run again computes nothing in any cached stage, and
    # its dry run says there is nothing to compute.
    cached = [s for s in ("detect", "pose", "visualize") if s in result.stages and
              result.stages[s]["computed"]]
    assert "pose" in cached and "visualize" in cached
    plan = run_recipe(recipe, folder, *overrides, "dry_run=true")
    assert {s: plan.stages[s].get("would_compute") for s in cached} == {s: None for s in cached}
    again = run_recipe(recipe, folder, *overrides)
    assert {s: again.stages[s]["computed"] for s in cached} == {s: 0 for s in cached}
    assert {s: again.stages[s]["cache_hits"] for s in cached} == {s: result.stages[s]["units"] for s in cached}
    assert again.records == result.records


def test_body_rtmo_exports_its_own_boxes_and_needs_no_detector(run_recipe):
    result = run_recipe("body_rtmo", COCO, "pose/model=rtmo_s")
    assert "detect" not in result.stages and "detect" not in result.manifest["checkpoints"]
    boxes = [inst["bbox"] for inst in all_instances(result)]
    assert boxes and len({tuple(b) for b in boxes}) == len(boxes)  # one box per person found


def test_wholebody_exports_name_the_parts(run_recipe):
    result = run_recipe("wholebody_rtmw", COCO, "detect/model=rtmdet_nano_person", "pose/model=rtmw_m")
    for inst in all_instances(result):
        for part, (start, stop) in WHOLEBODY_PARTS.items():
            assert inst[part]["keypoints"] == inst["keypoints"][start:stop]
            assert inst[part]["keypoint_scores"] == inst["keypoint_scores"][start:stop]


def test_hand3d_exports_camera_space_handedness_and_root_depth(run_recipe):
    result = run_recipe("hand3d_internet", INTERHAND, "pose.camera.focal=[1500,1500]")
    for record in result.records:
        assert any("no detector" in note for note in record["notes"])  # said in the output
        assert any("keypoints_3d assume a camera" in note for note in record["notes"])
        (inst,) = record["instances"]
        h, w = cv2.imread(record["source"]).shape[:2]
        assert inst["bbox"] == [0, 0, w, h]
        assert np.shape(inst["keypoints_3d"]) == (42, 3)
        assert inst["handedness"] in ("right", "left", "both", "none")
        assert isinstance(inst["rel_root_depth"], float)
        for hand, (start, stop) in (("right_hand", (0, 21)), ("left_hand", (21, 42))):
            assert np.shape(inst[hand]["keypoints_3d"]) == (21, 3)
            assert inst[hand]["keypoints_3d"] == inst["keypoints_3d"][start:stop]


# -- parity with MMPose's own inference, per family -------------------------------

def test_a_family_with_its_own_keypoints_and_metric_face_rtmpose(run_recipe, tmp_path):
    """RTMPose-m face (68 keypoints, NME): its YAML, a recipe and a metric row
    (evaluation.PER_BOX) were all it took; boxes from a COCO-style face file."""
    faces = face_file(tmp_path)
    result = run_recipe("face_rtmpose", COCO, "detect/model=gt", f"eval.ann_file={faces}")
    found = all_instances(result)
    assert len(found) == 4 and all(np.shape(i["keypoints"]) == (68, 2) for i in found)
    assert all(i["face"]["keypoints"] == i["keypoints"] for i in found)  # its part: all 68 (OpenPose's face array)
    metrics = result.metrics
    assert (metrics["main"], metrics["kind"], metrics["higher_is_better"]) == ("NME", "face", False)
    assert metrics["values"]["matched_instances"] == metrics["values"]["gt_instances"] == 4
    assert metrics["values"]["NME"] > 0  # locally made weights: far from the faces, scored
    assert len(list((result.out_dir / "overlays").iterdir())) == len(result.records)


@pytest.mark.parametrize("recipe,overrides,folder,bbox_thr", [
    ("hand_rtmpose", [], HANDS / FEW_HANDS[0], 0.6),
    ("wholebody_rtmw", ["detect/model=rtmdet_nano_person", "pose/model=rtmw_m"], COCO, 0.8),  # 27 boxes
    ("wholebody_dwpose", ["detect/model=rtmdet_nano_person", "pose/model=dwpose_m"], COCO, 0.8),
])
def test_topdown_families_match_inference_topdown(run_recipe, recipe, overrides, folder, bbox_thr):
    """MMPose's own PyTorch path against our PyTorch backend (ONNX Runtime has its own tests)."""
    from mmpose.apis import inference_topdown
    result = run_recipe(recipe, folder, *overrides, "backend=pytorch", "detect.batch_size=1",
                        f"detect.bbox_thr={bbox_thr}")
    cfg = compose_config([f"recipe={recipe}", *overrides])
    det_model = load_detector(str(cfg.detect.model.name), run_recipe.paths["detect"])
    pose_model = load_pose_model(str(cfg.pose.model.name), run_recipe.paths["pose"])
    compared = Compared()
    for record in result.records:
        # detect.batch_size=1 is inference_detector's batch: the same sums in
        # the same order on any machine, so the boxes are equal to the bit
        ref = reference_boxes(det_model, record["source"], bbox_thr=bbox_thr)
        ours = np.array([i["bbox"] + [i["bbox_score"]] for i in record["instances"]]).reshape(-1, 5)
        np.testing.assert_array_equal(ours, ref.astype(np.float32).astype(np.float64))
        if len(ref):
            with decoding_margins():
                samples = inference_topdown(pose_model, record["source"], ref[:, :4])
            assert_instances_match(record["instances"], samples, compared)
    compared.assert_mostly_strict()


def test_rtmo_matches_inference_bottomup(run_recipe):
    from mmpose.apis import inference_bottomup
    result = run_recipe("body_rtmo", COCO, "pose/model=rtmo_s", "backend=pytorch", "detect.bbox_thr=0.1",
                        "pose.batch_size=1")
    model = load_pose_model("rtmo_s", run_recipe.paths["pose"])
    total = 0
    for record in result.records:
        pred = inference_bottomup(model, record["source"])[0].pred_instances
        keep = pred.bbox_scores > 0.1
        ours = record["instances"]
        assert len(ours) == keep.sum()
        for inst, k, s, box, score in zip(ours, pred.keypoints[keep], pred.keypoint_scores[keep],
                                          pred.bboxes[keep], pred.bbox_scores[keep]):
            np.testing.assert_allclose(inst["keypoints"], k, atol=1e-3)
            np.testing.assert_allclose(inst["keypoint_scores"], s, atol=1e-5)
            np.testing.assert_allclose(inst["bbox"], box, atol=1e-3)
            np.testing.assert_allclose(inst["bbox_score"], score, atol=1e-5)
        total += len(ours)
    assert total > 0


def interhand_cameras() -> dict[str, dict]:
    """Per image: the InterHand2.6M camera and the ground-truth depths (mm) of
    the right (joint 20) and left (joint 41) hand roots in that camera."""
    data = json.loads((INTERHAND / "test_interhand2.6m_data.json").read_text())
    cameras = json.loads((INTERHAND / "test_interhand2.6m_camera.json").read_text())
    joints = json.loads((INTERHAND / "test_interhand2.6m_joint_3d.json").read_text())
    out = {}
    for image in data["images"]:
        capture, cam, frame = str(image["capture"]), image["camera"], str(image["frame_idx"])
        camera = {k: np.array(v[cam], dtype=np.float64) for k, v in cameras[capture].items()}
        world = np.array(joints[capture][frame]["world_coord"], dtype=np.float64)
        in_camera = (camera["camrot"] @ (world - camera["campos"]).T).T
        out[image["file_name"]] = {"focal": camera["focal"].tolist(), "princpt": camera["princpt"].tolist(),
                                   "root_depth": [in_camera[20, 2], in_camera[41, 2]]}
    return out


@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime"])
def test_internet_matches_mmpose_3d_hand_path(run_recipe, backend):
    """hand3d_internet_demo.py's inference_topdown on the whole image, and the
    InterHand camera model (pixel_to_camera) with the dataset's own cameras.
    Tolerances as tests/reference.py reasons: keypoints placed by a clear 3D
    heatmap maximum agree to COORD_ATOL px, scores within REORDER_RTOL of the
    heatmap's scale, the relative root depth within REORDER_RTOL of its range."""
    from mmpose.apis import inference_topdown
    from mmpose.codecs.utils import pixel_to_camera
    model, compared = None, Compared()
    for name, camera in interhand_cameras().items():
        result = run_recipe("hand3d_internet", INTERHAND / name,
                            f"pose.camera.focal=[{camera['focal'][0]},{camera['focal'][1]}]",
                            f"pose.camera.principal_point=[{camera['princpt'][0]},{camera['princpt'][1]}]",
                            f"pose.camera.root_depth=[{camera['root_depth'][0]},{camera['root_depth'][1]}]",
                            f"backend={backend}")
        model = model or load_pose_model("internet_res50", run_recipe.paths["pose"])
        (inst,) = result.records[0]["instances"]
        assert "notes" not in result.records[0] or not any("assume" in n for n in result.records[0]["notes"])
        with decoding_margins():
            pred = inference_topdown(model, str(INTERHAND / name))[0].pred_instances
        kpts, scores = pred.keypoints[0].copy(), pred.keypoint_scores[0].copy()
        present = pred.hand_type.reshape(2)
        # hand_type = logit > 0: a logit within float noise of 0 would make a
        # hand's presence (and its zeroed scores) a tie; these images have none
        assert (np.abs(pred.hand_type_logits) > REORDER_RTOL).all()
        assert inst["hand_present"] == {"right": bool(present[0]), "left": bool(present[1])}
        scores[:21] *= present[0]
        scores[21:] *= present[1]
        factor = 1 / 255 if scores.max() > 1 else 1.0
        decided = compared.check(inst["keypoints"], inst["keypoint_scores"], pred, ref_kpts=kpts[:, :2],
                                 ref_scores=scores * factor, score_factor=factor)
        codec = model.head.decoder
        assert abs(inst["rel_root_depth"] - float(np.ravel(pred.rel_root_depth)[0])) <= \
            REORDER_RTOL * codec.root_depth_bound
        kpts[:21, 2] += camera["root_depth"][0]
        kpts[21:, 2] += camera["root_depth"][1]
        expected = pixel_to_camera(kpts[None], *camera["focal"], *camera["princpt"])[0]
        rows = decided.all(-1)
        np.testing.assert_allclose(np.asarray(inst["keypoints_3d"])[rows], expected[rows], rtol=1e-5, atol=1e-2)
    compared.assert_mostly_strict()


# -- the registry and the shortcuts -------------------------------------------------

def metafile_weights() -> dict[str, str]:
    """Config file name -> Weights URL, from the metafiles inside the installed mmpose."""
    import mmpose
    import yaml
    out = {}
    for meta in (Path(mmpose.__file__).parent / ".mim" / "configs").rglob("*.yml"):
        for model in (yaml.safe_load(meta.read_text()) or {}).get("Models", []) or []:
            if model.get("Config") and model.get("Weights"):
                out[Path(model["Config"]).name] = model["Weights"]
    return out


# Published by OpenMMLab without a sha256 prefix in the file name: verified by size only.
PUBLISHED_WITHOUT_HASH = {"rtmw_m", "rtmw_l"}


def test_registry_entries_name_installed_configs_and_official_urls():
    from runner.checkpoints.download import expected_hash_prefix
    from runner.models.configs import resolve_config_path
    from runner.models.registry import entries
    weights = metafile_weights()
    names = set()
    for group in ("detect", "pose"):
        for entry in entries(group):
            names.add(str(entry.name))
            if not entry.get("config"):
                continue  # whole_image, from_file; ONNX model files (their checkpoint is their `path`)
            config = resolve_config_path(str(entry.config))
            assert config.is_file()
            url = str(entry.checkpoint)
            if not entry.get("checkpoint_source"):
                assert weights[config.name] == url, entry.name
            if entry.name in PUBLISHED_WITHOUT_HASH:
                assert expected_hash_prefix(url.rsplit("/", 1)[1]) is None
            else:
                assert expected_hash_prefix(url.rsplit("/", 1)[1]), f"{entry.name}: {url} has no hash suffix"
    guide = {"rtmpose_t", "rtmpose_s", "rtmpose_m", "rtmpose_l", "rtmo_s", "rtmo_m", "rtmo_l",
             "rtmpose_m_hand", "internet_res50", "rtmw_m", "rtmw_l", "rtmw_x", "dwpose_m", "dwpose_l",
             "rtmdet_nano_person", "rtmdet_m_person", "rtmdet_nano_hand"}
    assert guide <= names


@pytest.mark.parametrize("shortcut", ["human", "hand", "wholebody"])
def test_shortcuts_pick_what_mmposeinferencer_picks(shortcut):
    from mmpose.apis.inferencers.utils import default_det_models
    from mmpose.apis.inferencers.utils.get_model_alias import get_model_aliases
    from runner.models.configs import resolve_config_path
    cfg = compose_config([f"recipe={shortcut}"])
    assert cfg.recipe.name == shortcut
    assert Path(str(cfg.pose.model.config)).stem == get_model_aliases("mmpose")[shortcut]
    detector = default_det_models[shortcut]
    assert str(cfg.detect.model.checkpoint) == detector["weights"]
    assert resolve_config_path(str(cfg.detect.model.config)) == Path(detector["model"]).resolve()
    assert list(cfg.detect.model.cat_ids) == list(detector["cat_ids"])


def test_default_models_of_the_recipes():
    expect = {"body_rtmpose": ("rtmdet_m_person", "rtmpose_m"), "body_rtmo": (None, "rtmo_l"),
              "hand_rtmpose": ("rtmdet_nano_hand", "rtmpose_m_hand"), "hand_mediapipe": ("mediapipe_palm", "mediapipe_hand"),
              "hand3d_internet": ("whole_image", "internet_res50"), "face_rtmpose": ("whole_image", "rtmpose_m_face"),
              "wholebody_rtmw": ("rtmdet_m_person", "rtmw_l"), "wholebody_dwpose": ("rtmdet_m_person", "dwpose_l")}
    for recipe, (det, pose) in expect.items():
        cfg = compose_config([f"recipe={recipe}"])
        assert (str(cfg.detect.model.name) if "detect" in cfg.recipe.steps else None) == det
        assert str(cfg.pose.model.name) == pose


def test_models_list_prints_the_registry():
    import subprocess
    import sys
    from conftest import ROOT
    done = subprocess.run([sys.executable, "-m", "runner.models", "list"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    for name in ("rtmo_l", "rtmw_x", "internet_res50", "rtmdet_nano_hand", "dwpose_l", "blazepose_full",
                 "mediapipe_hand", "mediapipe_palm"):
        assert name in done.stdout
    assert "wholebody" in done.stdout and "hand3d" in done.stdout and "384x288" in done.stdout


# -- detector choices ---------------------------------------------------------------

def test_whole_image_detector(run_recipe):
    result = run_recipe("body_rtmpose", COCO, "detect/model=whole_image", "pose/model=rtmpose_t")
    assert "detect" not in result.manifest["checkpoints"]
    for record in result.records:
        (inst,) = record["instances"]
        h, w = cv2.imread(record["source"]).shape[:2]
        assert inst["bbox"] == [0, 0, w, h] and inst["bbox_score"] == 1
        assert "no detector: the whole image is the box" in record["notes"]


def test_from_file_detector_uses_the_coco_results_boxes(run_recipe):
    result = run_recipe("body_rtmpose", COCO, "detect/model=from_file", f"detect.model.path={COCO_DETECTIONS}",
                        "pose/model=rtmpose_t", "detect.bbox_thr=0.5")
    detections = json.loads(COCO_DETECTIONS.read_text())
    for record in result.records:
        image_id = int(Path(record["id"]).stem)
        expected = sorted((d for d in detections if d["image_id"] == image_id and d["score"] > 0.5),
                          key=lambda d: -d["score"])
        ours = record["instances"]
        assert len(ours) == len(expected) > 0
        for inst, det in zip(ours, expected):
            x, y, w, h = det["bbox"]
            np.testing.assert_allclose(inst["bbox"], [x, y, x + w, y + h], rtol=1e-6)
            assert inst["bbox_score"] == pytest.approx(det["score"])
            assert np.shape(inst["keypoints"]) == (17, 2)


def test_from_file_detector_takes_ground_truth_boxes(run_recipe):
    """An annotation file (boxes without scores, ids from its `images`) works too."""
    data = json.loads((HANDS / "test_onehand10k.json").read_text())
    result = run_recipe("hand_rtmpose", HANDS, "detect/model=from_file",
                        f"detect.model.path={HANDS / 'test_onehand10k.json'}", "detect.model.category_id=null")
    ids = {im["file_name"]: im["id"] for im in data["images"]}
    for record in result.records:
        boxes = [a["bbox"] for a in data["annotations"] if a["image_id"] == ids[record["id"]]]
        assert len(record["instances"]) == len(boxes) > 0
        assert all(inst["bbox_score"] == 1 for inst in record["instances"])


def test_missing_detections_file_is_one_clear_error(run_recipe, tmp_path):
    from runner.errors import RunnerError
    with pytest.raises(RunnerError, match="detect.model.path=.*nowhere.json does not exist: pass detect.model.path=FILE"):
        run_recipe("body_rtmpose", COCO, "detect/model=from_file", f"detect.model.path={tmp_path / 'nowhere.json'}",
                   "pose/model=rtmpose_t")


def test_an_image_with_no_detection_gets_zero_instances(run_recipe, tmp_path, forwards):
    """Not MMPose's silent whole-image fallback: no box, no pose; the summary says so."""
    from runner.pipeline import summary
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "blank.jpg"), np.full((480, 640, 3), 127, np.uint8))
    # untrained detectors are confident about anything (0.9999 on a grey image):
    # a threshold no score passes is "the detector found nothing"
    result = run_recipe("body_rtmpose", folder, "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
                        "detect.bbox_thr=1")
    assert result.records[0]["instances"] == [] and forwards["TopdownPoseEstimator"] == 0
    assert result.manifest["empty"] == ["blank.jpg"]
    assert "1 item(s) with no detections (zero instances): blank.jpg" in summary(result, dry_run=False)
    assert json.loads((result.out_dir / "predictions" / "blank.jpg.json").read_text()) == []


# -- sweeping across families ---------------------------------------------------------

def test_sweep_across_families_shares_detections(make_checkpoint, machine_dir, tmp_path):
    """-m recipe=body_rtmpose,wholebody: each job its own pose model (local
    weights per model through download.checkpoints), one detector: the second
    job reuses every detection of the first."""
    import subprocess
    import sys
    from conftest import ROOT
    det, body, whole = make_checkpoint("rtmdet_nano_person"), make_checkpoint("rtmpose_m"), make_checkpoint("rtmw_m")
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "recipe=body_rtmpose,wholebody", f"input={COCO}",
         "detect/model=rtmdet_nano_person", "detect.bbox_thr=0.5", f"cache.dir={tmp_path / 'cache'}",
         f"cache.machine_dir={machine_dir}",
         f"+download.checkpoints.rtmdet_nano_person={det[1]}", f"+download.checkpoints.rtmpose_m={body[1]}",
         f"+download.checkpoints.rtmw_m={whole[1]}", f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = (json.loads((sweep / str(i) / "manifest.json").read_text()) for i in (0, 1))
    assert (first["recipe"], second["recipe"]) == ("body_rtmpose", "wholebody")
    assert second["checkpoints"]["pose"]["file"].startswith(str(machine_dir / "checkpoints"))  # downloaded
    assert first["stages"]["detect"]["computed"] == 4
    assert second["stages"]["detect"]["computed"] == 0 and second["stages"]["detect"]["cache_hits"] == 4
    assert second["stages"]["pose"]["computed"] == first["stages"]["pose"]["computed"] > 0

"""The ONNX-native engine (runner/native): ONNX model files as models (the
trained MMDeploy detectors of ../shared/weights find the people of the COCO
images), a process that never imports torch / mmpose / mmdet / mmcv, the
flip test as a choice in the key, overlays pixel for pixel MMPose's, the
keypoint sets MMPose's, and wrong files refused in one line before any image
is read. Its parity with MMPose's own inference (same checkpoints, same boxes)
is tests/test_backends.py's and tests/test_families.py's: ONNX Runtime and
OpenVINO runs take this engine."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runner
from conftest import COCO, DATA, ROOT, exports_in
from runner.errors import RunnerError

WEIGHTS = ROOT.parent / "shared" / "weights"
RTMDET_NANO = WEIGHTS / "rtmdet-nano_person_end2end.onnx"
YOLOX_NANO = WEIGHTS / "yolox-nano_humanart_person_end2end.onnx"
HEAVY = ("torch", "mmpose", "mmdet", "mmcv", "mmengine")


@pytest.fixture
def pose_t(make_checkpoint):
    return ["pose/model=rtmpose_t", f"+download.checkpoints.rtmpose_t={make_checkpoint('rtmpose_t')[0]}"]


def people(with_keypoints: bool, gt_file: Path = COCO / "test_coco.json") -> dict[str, np.ndarray]:
    """Each image's annotated people (those with keypoints, or all) as xyxy boxes."""
    data = json.loads(gt_file.read_text())
    out = {im["file_name"]: [] for im in data["images"]}
    names = {im["id"]: im["file_name"] for im in data["images"]}
    for a in data["annotations"]:
        if (a.get("num_keypoints") or not with_keypoints) and not a.get("iscrowd"):
            x, y, w, h = a["bbox"]
            out[names[a["image_id"]]].append([x, y, x + w, y + h])
    return {k: np.array(v, np.float64).reshape(-1, 4) for k, v in out.items()}


@pytest.mark.parametrize("model,path", [("onnx", RTMDET_NANO), ("onnx_yolox", YOLOX_NANO)])
def test_a_trained_end2end_detector_file_finds_the_people_of_the_coco_images(pose_t, tmp_path, model, path):
    from runner.boxes import iou
    result = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "run", overrides=[
        *pose_t, f"detect/model={model}", f"detect.model.path={path}", f"cache.dir={tmp_path / 'cache'}",
        "detect.bbox_thr=0.5"])
    everyone, posed = people(with_keypoints=False), people(with_keypoints=True)
    found = 0
    for record in result.records:
        boxes = np.array([i["bbox"] for i in record["instances"]]).reshape(-1, 4)
        assert len(boxes) and (iou(everyone[record["id"]], boxes).max(axis=0) >= 0.5).all(), \
            f"{record['id']}: a box on nobody"
        found += int((iou(posed[record["id"]], boxes).max(axis=1) >= 0.5).sum())
    assert found >= 0.9 * sum(len(t) for t in posed.values())  # the people with keypoints, found
    assert result.manifest["checkpoints"]["detect"]["sha256"] == \
        {"onnx": "b8585adb6d1352796f6e86337e09c3459b830645a7e7192d9381670bea2facbd",
         "onnx_yolox": "1450966de24902b18aada1a78913d7efd8fc8dcd51bd4d0d5591476bd4a38821"}[model]


IMPORTED = r"""
import json, sys, runner
result = runner.run(recipe="body_rtmpose", input=sys.argv[1], output_dir=sys.argv[2], overrides=sys.argv[3:])
print(json.dumps({"loaded": sorted(m for m in %r if m in sys.modules), "stages": result.stages}))
""" % (HEAVY,)


def run_in_a_new_process(tmp_path, name, *overrides) -> dict:
    done = subprocess.run([sys.executable, "-c", IMPORTED, str(COCO), str(tmp_path / name), *overrides], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_with_its_exports_cached_a_run_never_imports_torch_mmpose_mmdet_or_mmcv(make_checkpoint, tmp_path):
    models = ["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
              f"+download.checkpoints.rtmdet_nano_person={make_checkpoint('rtmdet_nano_person')[0]}",
              f"+download.checkpoints.rtmpose_t={make_checkpoint('rtmpose_t')[0]}",
              f"cache.dir={tmp_path / 'cache'}", "backend=onnxruntime"]
    first = run_in_a_new_process(tmp_path, "first", *models)  # exports the two networks: torch needed once
    assert "torch" in first["loaded"] and first["stages"]["pose"]["computed"] > 0
    again = run_in_a_new_process(tmp_path, "again", *models, "cache.refresh=true")  # every model runs again
    assert again["loaded"] == [] and again["stages"]["pose"]["computed"] == first["stages"]["pose"]["computed"]
    files = run_in_a_new_process(tmp_path, "file", *models, "detect/model=onnx", f"detect.model.path={RTMDET_NANO}")
    assert files["loaded"] == [] and files["stages"]["detect"]["computed"] == 4


def test_an_onnx_pose_file_is_a_model_like_any_checkpoint(make_checkpoint, tmp_path):
    """The runner's own export of RTMPose-t, given as a file: the same keypoints
    as the registry model; its sha256 is its identity; a sweep over files."""
    boxes = ["detect/model=gt", f"eval.ann_file={COCO / 'test_coco.json'}", f"cache.dir={tmp_path / 'cache'}",
             f"backend.dir={tmp_path / 'onnx'}"]
    registry = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "registry", overrides=[
        *boxes, "pose/model=rtmpose_t", f"+download.checkpoints.rtmpose_t={make_checkpoint('rtmpose_t')[0]}"])
    (export,) = exports_in(tmp_path / "onnx", "rtmpose-t*.onnx")
    as_file = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "file", overrides=[
        *boxes, "pose/model=onnx", f"pose.model.path={export}"])
    assert as_file.stages["pose"]["computed"] == registry.stages["pose"]["computed"]  # its own keys
    assert [r["instances"] for r in as_file.records] == [r["instances"] for r in registry.records]
    assert as_file.manifest["checkpoints"]["pose"]["file"] == str(export.resolve())
    assert as_file.metrics["values"] == registry.metrics["values"]
    again = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "again", overrides=[
        *boxes, "pose/model=onnx", f"pose.model.path={export}"])
    assert again.stages["pose"]["computed"] == 0


def test_flip_test_is_a_choice_in_the_key_and_off_runs_one_pass_a_crop(pose_t, tmp_path, monkeypatch):
    from runner.backends.network import Network
    passes = []
    real = Network.__call__
    monkeypatch.setattr(Network, "__call__", lambda self, batch: passes.append(len(batch)) or real(self, batch))
    args = [*pose_t, "detect/model=gt", f"eval.ann_file={COCO / 'test_coco.json'}", f"cache.dir={tmp_path / 'c'}",
            "backend=onnxruntime"]
    on = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "on", overrides=args)
    crops = on.stages["pose"]["computed"]
    assert sum(passes) == 2 * crops  # the model's own default: flip test on (the crop and its mirror)
    passes.clear()
    off = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "off",
                     overrides=[*args, "pose.flip_test=false"])
    assert off.stages["pose"]["computed"] == crops and sum(passes) == crops  # new keys; one pass a crop
    assert [r["instances"] for r in off.records] != [r["instances"] for r in on.records]
    explicit = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "explicit",
                          overrides=[*args, "pose.flip_test=false", "backend=pytorch"])
    for a, b in zip(explicit.records, off.records):  # the reference engine honours it too
        for x, y in zip(a["instances"], b["instances"]):
            np.testing.assert_allclose(x["keypoint_scores"], y["keypoint_scores"], atol=1e-3)


@pytest.mark.parametrize("role,path,more,said", [
    ("pose", "text", [], "is not a model file onnxruntime can load"),
    ("pose", RTMDET_NANO, [], "a SimCC pose export has two, simcc_x"),
    ("detect", "export", [], "an MMDeploy end2end detector gives dets [B, N, 5] and labels [B, N]"),
    ("pose", "export", ["pose.model.num_keypoints=133"], "predicts 17 keypoints, but pose.model.num_keypoints=133"),
    ("pose", "export", ["pose.model.keypoints=coco_wholebody"], "keypoint set coco_wholebody has 133 keypoints, but"),
    # a description that would give NaN or wrong keypoints (issue 24, item 7)
    # (a value that can never be right is the schema's, before the run folder is made)
    ("pose", "export", ["pose.model.std=[0,0,0]"], "pose.model.std=[0, 0, 0] is not three positive numbers"),
    ("pose", "export", ["pose.model.simcc_split_ratio=0"], "pose.model.simcc_split_ratio=0 is not a positive number"),
    ("pose", "export", ["pose.model.simcc_split_ratio=3"], "makes 576 bins, but the file's simcc_x has 384: pass "
                                                           "pose.model.simcc_split_ratio=2"),
    ("detect", RTMDET_NANO, ["detect.model.std=[0,57.12,58.395]"], "detect.model.std=[0, 57.12, 58.395] is not three "
                                                                    "positive numbers"),
    ("detect", "zero std pipeline", [], "detect.model.std=[0.0, 1.0, 1.0]: a std of 0 or less"),  # from the file
    ("detect", YOLOX_NANO, ["detect.model.input_size=[640,640]"], "but the file takes [416, 416]"),
    ("detect", "garbage pipeline", [], "pipeline.json is not MMDeploy's pipeline.json"),
])
def test_a_wrong_model_file_is_one_line_before_any_image_is_read(pose_t, tmp_path, role, path, more, said):
    runner.run(recipe="body_rtmpose", input=sorted(COCO.glob("*.jpg"))[0], output_dir=tmp_path / "made",
               overrides=[*pose_t, "detect/model=whole_image", f"backend.dir={tmp_path / 'onnx'}",
                          f"cache.dir={tmp_path / 'cache'}"])
    files = {"text": tmp_path / "notes.onnx", "export": exports_in(tmp_path / "onnx", "rtmpose-t*.onnx")[0],
             "garbage pipeline": tmp_path / "garbage" / "end2end.onnx"}
    files["text"].write_text("not a network")
    files["garbage pipeline"].parent.mkdir()
    shutil.copyfile(RTMDET_NANO, files["garbage pipeline"])
    (tmp_path / "garbage" / "pipeline.json").write_text('{"pipeline": {"tasks": 5}}')
    files["zero std pipeline"] = tmp_path / "zero" / "end2end.onnx"
    files["zero std pipeline"].parent.mkdir()
    shutil.copyfile(RTMDET_NANO, files["zero std pipeline"])
    normalize = {"type": "Normalize", "mean": [0, 0, 0], "std": [0, 1, 1], "to_rgb": False}
    (tmp_path / "zero" / "pipeline.json").write_text(json.dumps(
        {"pipeline": {"tasks": [{"module": "Transform", "transforms": [normalize]}]}}))
    given = files.get(path, path)
    other = ["detect/model=whole_image"] if role == "pose" else [*pose_t]
    done = subprocess.run([sys.executable, "-m", "runner", "recipe=body_rtmpose", f"input={COCO}", *other,
                           f"{role}/model=onnx", f"{role}.model.path={given}", *more, f"cache.dir={tmp_path / 'c'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1 and said in lines[0], done.stderr[-2000:]
    if "is not three positive numbers" in said or "is not a positive number" in said:
        assert not (tmp_path / "run").exists()  # the schema's refusal: no run began
        return
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "error" and manifest["input"]["items"] == []  # no image was read


def test_overlays_are_drawn_pixel_for_pixel_as_mmposes_visualizer():
    import cv2
    from mmengine.registry import DefaultScope
    from mmengine.structures import InstanceData
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.registry import VISUALIZERS
    from mmpose.structures import PoseDataSample
    from runner.native.draw import draw_poses
    from runner.native.keypoints import keypoint_set
    image = cv2.imread(str(COCO / "000000197388.jpg"))
    rng = np.random.default_rng(0)
    for name, count in (("coco", 17), ("coco_wholebody", 133)):
        boxes = np.array([[10.5, 20.2, 300.7, 400.1], [200, 50, 500, 420]], np.float32)
        kpts = (rng.uniform(-20, 660, (2, count, 2)) * [1, 0.62]).astype(np.float32)
        scores = rng.uniform(0, 1, (2, count)).astype(np.float32)
        with DefaultScope.overwrite_default_scope("mmpose"):
            vis = VISUALIZERS.build(dict(type="PoseLocalVisualizer", name=f"t{name}", vis_backends=None, radius=3,
                                         line_width=2))
        vis.set_dataset_meta(parse_pose_metainfo(dict(from_file=f"configs/_base_/datasets/{name}.py")),
                             skeleton_style="mmpose")
        instances = InstanceData(bboxes=boxes, bbox_scores=np.ones(2, np.float32), keypoints=kpts,
                                 keypoint_scores=scores, keypoints_visible=scores)  # as MMPose's inferencer has them
        vis.add_datasample("x", cv2.cvtColor(image, cv2.COLOR_BGR2RGB), PoseDataSample(pred_instances=instances),
                           draw_gt=False, draw_bbox=True, kpt_thr=0.3, show=False, draw_heatmap=False)
        ours = draw_poses(image, boxes, [{"keypoints": k, "keypoint_scores": s} for k, s in zip(kpts, scores)],
                          keypoint_set(name), 0.3, 3, 2, True)
        assert (cv2.cvtColor(vis.get_image(), cv2.COLOR_RGB2BGR) == ours).all(), name


def test_keypoint_sets_are_mmposes_and_each_model_names_its_own():
    from mmpose.apis.inference import dataset_meta_from_config
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from runner.models.configs import load_config
    from runner.models.registry import entries
    from runner.native.keypoints import keypoint_set
    for name in ("coco", "coco_wholebody", "coco_wholebody_hand", "interhand3d", "halpe26"):
        ours, theirs = keypoint_set(name), parse_pose_metainfo(dict(from_file=f"configs/_base_/datasets/{name}.py"))
        assert list(ours.names) == [theirs["keypoint_id2name"][i] for i in range(theirs["num_keypoints"])]
        assert list(ours.flip_indices) == list(theirs["flip_indices"])
        assert list(ours.skeleton) == [tuple(link) for link in theirs["skeleton_links"]]
        assert (ours.keypoint_colors == theirs["keypoint_colors"]).all()
        assert (ours.link_colors == theirs["skeleton_link_colors"]).all() and (ours.sigmas == theirs["sigmas"]).all()
    for entry in entries("pose"):
        if entry.get("config"):
            meta = dataset_meta_from_config(load_config(str(entry.config)), dataset_mode="train")
            assert entry.keypoints == meta["dataset_name"] and entry.num_keypoints == meta["num_keypoints"], entry.name


def test_an_onnx_model_needs_a_backend_that_runs_onnx(tmp_path):
    with pytest.raises(RunnerError, match="backend=pytorch does not run ONNX model files"):
        runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "run", overrides=[
            "detect/model=onnx", f"detect.model.path={RTMDET_NANO}", "recipe.steps=[download,detect]",
            "backend=pytorch", f"cache.dir={tmp_path / 'cache'}"])
    with pytest.raises(RunnerError, match="detect/model=onnx is an ONNX model file: pass detect.model.path=FILE.onnx"):
        runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "run2", overrides=[
            "detect/model=onnx", f"cache.dir={tmp_path / 'cache'}"])


def test_a_model_output_with_nan_fails_its_item_and_is_never_kept(pose_t, tmp_path, monkeypatch):
    """NaN never reaches a cache entry or a file (results_coco.json would not be
    JSON): the item fails in one line, the other items are written."""
    from runner.native.topdown import NativeTopdown
    real = NativeTopdown.predict
    poisoned = sorted(COCO.glob("*.jpg"))[1].name

    def predict(self, inputs):
        out = real(self, inputs)
        for (image, _), result in zip(inputs, out):
            if image.shape == _shape(poisoned):
                result["keypoint_scores"][:] = np.nan
        return out
    monkeypatch.setattr(NativeTopdown, "predict", predict)
    args = [*pose_t, "detect/model=gt", f"eval.ann_file={COCO / 'test_coco.json'}", f"cache.dir={tmp_path / 'c'}",
            "backend=onnxruntime", "pose.batch_size=1"]
    result = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "run", overrides=args)
    assert [f["id"] for f in result.failed] == [poisoned]
    assert "gave NaN or infinite keypoint_scores" in result.failed[0]["error"]
    json.loads((tmp_path / "run" / "results_coco.json").read_text(), parse_constant=_no_nan)
    monkeypatch.setattr(NativeTopdown, "predict", real)
    again = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "again", overrides=args)
    assert again.manifest["status"] == "ok" and again.stages["pose"]["computed"] == \
        sum(len(r["instances"]) for r in again.records if r["id"] == poisoned)  # only its boxes: none was kept


def _shape(name: str) -> tuple:
    import cv2
    return cv2.imread(str(COCO / name)).shape


def _no_nan(text: str):
    raise AssertionError(f"{text} in a JSON file")


@pytest.mark.parametrize("entry,size", [("onnx", (320, 320)), ("onnx_yolox", (640, 640))])
def test_a_detector_file_of_no_fixed_size_falls_back_to_its_entrys_size(entry, size, tmp_path):
    """A dynamic-size end2end file with no pipeline.json: the entry's own
    fallback_input_size (YOLOX's 640, as its YAML says; RTMDet-nano's 320)."""
    import yaml
    from omegaconf import OmegaConf
    from runner.native.describe import onnx_detector
    from runner.paths import CONF_DIR
    keys = OmegaConf.create(yaml.safe_load((CONF_DIR / "detect" / "model" / f"{entry}.yaml").read_text()))
    assert onnx_detector(keys, tmp_path / "end2end.onnx", None).input_size == size
    assert onnx_detector(keys, tmp_path / "end2end.onnx", (416, 416)).input_size == (416, 416)  # the file's own

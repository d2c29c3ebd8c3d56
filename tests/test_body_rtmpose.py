"""body_rtmpose end to end: parity with MMPose's own inference, and the cache
computing only what changed (model calls counted at the model boundary)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import runner
from conftest import COCO, ROOT
from reference import (Compared, assert_instances_match, decoding_margins, load_detector, load_pose_model, match_boxes,
                       reference_boxes)


@pytest.fixture
def body(make_checkpoint, cache_dir, tmp_path):
    """run(input, *overrides) with RTMDet-nano + RTMPose-t, local checkpoints,
    served over HTTP, and this test's cache."""
    det = make_checkpoint("rtmdet_nano_person")
    pose = make_checkpoint("rtmpose_t")
    runs = iter(range(1000))

    def run(input, *overrides, det_url=det[1], pose_url=pose[1]):
        args = ["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t", "backend=pytorch",
                f"cache.dir={cache_dir}", f"detect.model.checkpoint={det_url}",
                f"pose.model.checkpoint={pose_url}", *overrides]
        return runner.run(recipe="body_rtmpose", input=input, overrides=args,
                          output_dir=tmp_path / "runs" / str(next(runs)))

    run.det, run.pose = det, pose
    return run


@pytest.fixture
def photos(tmp_path) -> Path:
    """Three COCO images in a folder the test may edit."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(COCO.glob("*.jpg"))[:3]:
        shutil.copy(path, folder)
    return folder


def computed(result, stage):
    return result.stages[stage]["computed"]


def n_boxes(result) -> int:
    return sum(len(r["instances"]) for r in result.records)


# -- parity ---------------------------------------------------------------------

@pytest.mark.parametrize("det_name,pose_name,bbox_thr,image_index", [
    ("rtmdet_nano_person", "rtmpose_t", 0.3, None),  # the folder
    ("rtmdet_m_person", "rtmpose_m", 0.8, 1),  # the guide's pair; one image and fewer boxes keep it quick
])
def test_parity_with_mmdet_and_mmpose(make_checkpoint, cache_dir, tmp_path, det_name, pose_name, bbox_thr,
                                      image_index):
    from mmpose.apis import inference_topdown

    (det_path, det_url), (pose_path, pose_url) = make_checkpoint(det_name), make_checkpoint(pose_name)
    source = COCO if image_index is None else sorted(COCO.glob("*.jpg"))[image_index]
    result = runner.run(recipe="body_rtmpose", input=source, output_dir=tmp_path / "out", overrides=[
        f"detect/model={det_name}", f"pose/model={pose_name}", f"cache.dir={cache_dir}",
        f"detect.model.checkpoint={det_url}", f"pose.model.checkpoint={pose_url}",
        f"detect.bbox_thr={bbox_thr}", "detect.batch_size=1", "backend=pytorch"])

    det_model, pose_model = load_detector(det_name, det_path), load_pose_model(pose_name, pose_path)
    compared = Compared()
    for record in result.records:
        image = record["source"]
        # detect.batch_size=1 is inference_detector's batch: equal to the bit (same sums, same order)
        ref = reference_boxes(det_model, image, bbox_thr=bbox_thr)
        ours = np.array([i["bbox"] + [i["bbox_score"]] for i in record["instances"]]).reshape(-1, 5)
        np.testing.assert_array_equal(ours, ref.astype(np.float32).astype(np.float64))
        if not len(ref):
            continue
        with decoding_margins():
            samples = inference_topdown(pose_model, image, ref[:, :4])
        assert_instances_match(record["instances"], samples, compared)
    compared.assert_mostly_strict()


def test_batched_detection_matches_within_float_tolerance(body, forwards):
    """Batches of 4 images sum in another order than batches of 1: the boxes
    agree within the float32 tolerance of tests/reference.py."""
    one = body(COCO, "detect.batch_size=1", "cache.refresh=true")
    four = body(COCO, "detect.batch_size=4", "cache.refresh=true")
    assert forwards["RTMDet"] == 8
    paired = total = 0
    for a, b in zip(one.records, four.records):
        boxes = [np.array([i["bbox"] + [i["bbox_score"]] for i in r["instances"]]) for r in (a, b)]
        paired += len(match_boxes(*boxes, bbox_thr=0.3, nms_thr=0.3))
        total += len(a["instances"])
    assert total and paired >= 0.9 * total


# -- the cache computes only what changed -------------------------------------------

def test_second_identical_run_runs_no_model(body, photos, forwards):
    first = body(photos)
    assert forwards["RTMDet"] == 3 and forwards["TopdownPoseEstimator"] == n_boxes(first) > 0
    plan = body(photos, "dry_run=true")
    assert "would_compute" not in plan.stages["detect"] and "would_compute" not in plan.stages["pose"]
    forwards.clear()
    second = body(photos)
    assert forwards == {}
    assert computed(second, "detect") == computed(second, "pose") == 0
    assert second.stages["pose"]["cache_hits"] == n_boxes(first)
    assert second.records == first.records


def test_lower_bbox_thr_runs_pose_only_on_new_boxes(body, photos, forwards):
    strict = body(photos, "detect.bbox_thr=0.6")
    forwards.clear()
    plan = body(photos, "detect.bbox_thr=0.3", "dry_run=true")
    assert forwards == {}
    loose = body(photos, "detect.bbox_thr=0.3")
    new_boxes = n_boxes(loose) - n_boxes(strict)
    assert new_boxes > 0
    assert forwards["RTMDet"] == 0
    assert forwards["TopdownPoseEstimator"] == computed(loose, "pose") == new_boxes
    assert plan.stages["pose"]["would_compute"] == {"new input": new_boxes}
    assert plan.stages["detect"]["cache_hits"] == 3


def test_kpt_thr_change_runs_no_model(body, photos, forwards):
    body(photos)
    forwards.clear()
    plan = body(photos, "visualize.kpt_thr=0.05", "dry_run=true")
    assert plan.stages["visualize"]["would_compute"] == {"changed parameter": 3}
    redrawn = body(photos, "visualize.kpt_thr=0.05")
    assert forwards == {}
    assert computed(redrawn, "visualize") == 3


def test_new_checkpoint_recomputes_what_it_feeds(body, photos, forwards, make_checkpoint):
    first = body(photos)
    other_pose = make_checkpoint("rtmpose_t", seed=1)[1]
    forwards.clear()
    plan = body(photos, "dry_run=true", pose_url=other_pose)
    assert plan.stages["download"]["would_compute"] == {"not downloaded yet": 1}
    assert plan.stages["pose"]["would_compute"] == {"checkpoint not downloaded yet": n_boxes(first)}
    new_pose = body(photos, pose_url=other_pose)
    assert forwards["RTMDet"] == 0 and forwards["TopdownPoseEstimator"] == n_boxes(first)
    assert new_pose.records != first.records
    forwards.clear()
    new_det = body(photos, det_url=make_checkpoint("rtmdet_nano_person", seed=1)[1])
    assert forwards["RTMDet"] == 3 and computed(new_det, "detect") == 3
    assert forwards["TopdownPoseEstimator"] == computed(new_det, "pose") == n_boxes(new_det)


def test_changed_checkpoint_is_explained(body, photos, make_checkpoint):
    first = body(photos)
    local = make_checkpoint("rtmpose_t", seed=1)[0]  # a local path: no download needed
    plan = body(photos, "dry_run=true", pose_url=str(local))
    assert plan.stages["pose"]["would_compute"] == {"changed checkpoint": n_boxes(first)}
    assert "would_compute" not in plan.stages["detect"]


def test_changed_code_is_explained(body, photos, monkeypatch):
    from runner.models.topdown import TopdownEstimator
    first = body(photos)
    monkeypatch.setattr(TopdownEstimator, "code_version", TopdownEstimator.code_version + 1)
    plan = body(photos, "dry_run=true")
    assert plan.stages["pose"]["would_compute"] == {"changed code": n_boxes(first)}
    assert "would_compute" not in plan.stages["detect"]


def test_edited_image_recomputes_only_that_image(body, photos, forwards):
    first = body(photos)
    edited = sorted(photos.glob("*.jpg"))[1]
    image = cv2.imread(str(edited))
    cv2.rectangle(image, (10, 10), (200, 200), (0, 0, 255), -1)
    cv2.imwrite(str(edited), image)
    forwards.clear()
    plan = body(photos, "dry_run=true")
    assert plan.stages["detect"]["would_compute"] == {"new input": 1}
    again = body(photos)
    assert forwards["RTMDet"] == 1 and computed(again, "detect") == 1
    edited_boxes = len(again.records[1]["instances"])
    assert forwards["TopdownPoseEstimator"] <= edited_boxes
    assert again.records[0] == first.records[0] and again.records[2] == first.records[2]


def test_added_image_computes_only_it(body, photos, forwards):
    body(photos)
    shutil.copy(sorted(COCO.glob("*.jpg"))[3], photos)
    forwards.clear()
    again = body(photos)
    assert forwards["RTMDet"] == 1
    assert forwards["TopdownPoseEstimator"] == len(again.records[-1]["instances"])
    assert again.stages["detect"]["cache_hits"] == 3


def test_same_image_content_under_another_name_is_a_cache_hit(body, photos, forwards):
    body(photos)
    renamed = photos / "renamed.jpg"
    sorted(photos.glob("*.jpg"))[0].rename(renamed)
    forwards.clear()
    body(photos)
    assert forwards == {}


# -- damaged entries, interrupted runs, parallel runs -------------------------------

def test_truncated_entry_is_recomputed_with_a_warning(body, photos, cache_dir, forwards, caplog):
    # batches of one box in both runs: the recomputed entry is the same sums in
    # the same order as the first, hence equal to the bit
    first = body(photos, "pose.batch_size=1")
    entries = sorted((cache_dir / "stages" / "pose").rglob("*.safetensors"))
    assert len(entries) == n_boxes(first)
    data = entries[0].read_bytes()
    entries[0].write_bytes(data[: len(data) // 2])
    forwards.clear()
    with caplog.at_level("WARNING"):
        again = body(photos, "pose.batch_size=1")
    assert forwards["TopdownPoseEstimator"] == 1 and computed(again, "pose") == 1
    assert "damaged" in caplog.text
    assert again.records == first.records


def test_bit_flip_is_caught_by_the_checksum(body, photos, cache_dir, forwards):
    body(photos)
    entry = sorted((cache_dir / "stages" / "detect").rglob("*.safetensors"))[0]
    data = bytearray(entry.read_bytes())
    data[-3] ^= 0xFF  # inside the arrays, not the header
    entry.write_bytes(bytes(data))
    forwards.clear()
    body(photos)
    assert forwards["RTMDet"] == 1


def test_interrupted_run_keeps_what_it_finished(body, photos, forwards, monkeypatch):
    from runner.models.topdown import TopdownEstimator
    calls = {"n": 0}
    original = TopdownEstimator.predict

    def interrupted(self, units):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, units)

    monkeypatch.setattr(TopdownEstimator, "predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        body(photos, "pose.batch_size=2")
    done = forwards["TopdownPoseEstimator"]
    assert done == 2
    monkeypatch.setattr(TopdownEstimator, "predict", original)
    forwards.clear()
    finished = body(photos, "pose.batch_size=2")
    assert forwards["RTMDet"] == 0
    assert finished.stages["pose"]["cache_hits"] == done


def cli(*args, cwd=ROOT, check=True):
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True,
                          text=True, check=check)


def manifests(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/manifest.json"),
                                                       key=lambda p: int(p.parent.name))]


def test_sweep_jobs_share_the_cache(body, photos, cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    cli("-m", "recipe=body_rtmpose", f"input={photos}", "detect/model=rtmdet_nano_person",
        "pose/model=rtmpose_t", f"cache.dir={cache_dir}", f"detect.model.checkpoint={body.det[1]}",
        f"pose.model.checkpoint={body.pose[1]}", "detect.bbox_thr=0.3,0.5",
        "visualize.kpt_thr=0.1,0.3", f"hydra.sweep.dir={sweep}")
    jobs = manifests(sweep)
    assert [(j["config"]["detect"]["bbox_thr"], j["config"]["visualize"]["kpt_thr"]) for j in jobs] == \
        [(0.3, 0.1), (0.3, 0.3), (0.5, 0.1), (0.5, 0.3)]
    detect = [j["stages"]["detect"]["computed"] for j in jobs]
    pose = [j["stages"]["pose"]["computed"] for j in jobs]
    assert detect == [3, 0, 0, 0]
    assert pose[0] > 0 and pose[1:] == [0, 0, 0]  # the 0.5 boxes are a subset of the 0.3 ones
    for job in jobs:
        out = Path(job["config"]["output"]["dir"])
        assert len(list((out / "overlays").glob("*.jpg"))) == 3
        assert len(list((out / "predictions").glob("*.json"))) == 3


def test_parallel_sweep_jobs_compute_each_entry_once(body, photos, cache_dir, tmp_path):
    """Two processes (joblib launcher) want the same detections at once: the
    entry locks make one compute and the other reuse."""
    sweep = tmp_path / "sweep"
    cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "recipe=body_rtmpose",
        f"input={photos}", "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
        f"cache.dir={cache_dir}", f"detect.model.checkpoint={body.det[1]}",
        f"pose.model.checkpoint={body.pose[1]}", "detect.bbox_thr=0.3,0.31",
        f"hydra.sweep.dir={sweep}")
    jobs = manifests(sweep)
    assert len(jobs) == 2
    assert sum(j["stages"]["detect"]["computed"] for j in jobs) == 3
    boxes = [len(json.loads(p.read_text())) for p in
             (Path(jobs[0]["config"]["output"]["dir"]) / "predictions").glob("*.json")]
    # every box of the looser job was computed once, by one of the two
    assert sum(j["stages"]["pose"]["computed"] for j in jobs) == sum(boxes)


# -- outputs --------------------------------------------------------------------------

def test_run_folder_holds_overlays_predictions_and_manifest(body, photos):
    result = body(photos)
    out = result.out_dir
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(p.name for p in photos.iterdir())
    for record in result.records:
        saved = json.loads((out / "predictions" / f"{record['id']}.json").read_text())
        assert saved == record["instances"]
        for inst in saved:
            assert np.array(inst["keypoints"]).shape == (17, 2)
            assert np.array(inst["keypoint_scores"]).shape == (17,)
            assert len(inst["bbox"]) == 4 and isinstance(inst["bbox_score"], float)
    coco = json.loads((out / "results_coco.json").read_text())
    assert len(coco) == n_boxes(result)
    assert {c["image_id"] for c in coco} <= {int(p.stem) for p in photos.iterdir()}
    assert all(len(c["keypoints"]) == 51 for c in coco)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["checkpoints"]["pose"]["sha256"].startswith(Path(body.pose[0]).stem[-8:])
    assert {i["id"] for i in manifest["input"]["items"]} == {p.name for p in photos.iterdir()}
    assert set(manifest["stages"]) == {"download", "detect", "pose", "visualize", "export"}
    assert manifest["versions"]["mmpose"] == "1.3.2"
    overlay = cv2.imread(str(out / "overlays" / "000000000785.jpg"))
    original = cv2.imread(str(photos / "000000000785.jpg"))
    assert overlay.shape == original.shape and np.abs(overlay.astype(int) - original).mean() > 1


def test_zero_boxes_give_zero_instances(body, photos):
    result = body(photos, "detect.bbox_thr=1.0")
    assert all(r["instances"] == [] for r in result.records)
    assert computed(result, "pose") == 0


# -- videos ---------------------------------------------------------------------------

VIDEO = COCO.parent / "video" / "demo.mp4"


def test_video_frames_are_items_cached_by_video_content_and_index(body, forwards):
    first = body(VIDEO, "max_frames=3", "detect.bbox_thr=0.6")
    assert [r["id"] for r in first.records] == [f"demo.mp4#{i:06d}" for i in range(3)]
    assert [r["frame_index"] for r in first.records] == [0, 1, 2]
    assert forwards["RTMDet"] == 3
    out = first.out_dir
    saved = json.loads((out / "predictions" / "demo.mp4.json").read_text())
    assert [f["frame_id"] for f in saved] == [0, 1, 2]
    assert saved[1]["instances"] == first.records[1]["instances"]
    overlay = cv2.VideoCapture(str(out / "overlays" / "demo.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (overlay.get(cv2.CAP_PROP_FRAME_WIDTH), overlay.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (960, 540)
    forwards.clear()
    longer = body(VIDEO, "detect.bbox_thr=0.6")  # all 5 frames: only the 2 new ones run
    assert forwards["RTMDet"] == 2 and longer.stages["detect"]["cache_hits"] == 3
    assert longer.records[:3] == first.records


def test_items_with_one_stem_write_separate_outputs(body, tmp_path):
    """x.jpg and x.png in one folder never overwrite each other's overlay or
    predictions: output names keep the input's extension."""
    folder = tmp_path / "same-stem"
    folder.mkdir()
    images = sorted(COCO.glob("*.jpg"))
    shutil.copy(images[0], folder / "x.jpg")
    cv2.imwrite(str(folder / "x.png"), cv2.imread(str(images[1])))
    result = body(folder, "detect.bbox_thr=0.5")
    out = result.out_dir
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["x.jpg", "x.png.jpg"]
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["x.jpg.json", "x.png.json"]
    for record in result.records:
        saved = json.loads((out / "predictions" / f"{record['id']}.json").read_text())
        assert saved == record["instances"]
    assert result.records[0]["instances"] != result.records[1]["instances"]

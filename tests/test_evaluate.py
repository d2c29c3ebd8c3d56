"""evaluate: MMPose's own metrics on the run's predictions. Ground truth fed
back scores perfectly; perturbed predictions score exactly what MMPose's metric
classes (and COCOeval by hand) give for them; detect/model=gt uses the
annotation boxes; the step is cached; bad annotation files fail in one line."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import runner
from conftest import COCO, DATA, face_file
from runner.errors import RunnerError
from runner.evaluation import Prediction, choose_metric, load_ground_truth, score
from runner.models.registry import load_entry

BODY = COCO / "test_coco.json"
WHOLEBODY = COCO / "test_coco_wholebody.json"  # conftest.face_file makes a face file of its faces
HANDS = {"onehand10k": DATA / "onehand10k" / "test_onehand10k.json",
         "freihand": DATA / "freihand" / "test_freihand.json"}


def annotation_keypoints(ann: dict) -> np.ndarray:
    """(K, 3) of an annotation, the whole body's 133 in COCO-WholeBody's order."""
    parts = [ann["keypoints"]] + [ann[k] for k in ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
                                  if k in ann]
    return np.concatenate([np.array(p, np.float64).reshape(-1, 3) for p in parts])


def predictions_from(gt, noise: float = 0.0, seed: int = 0) -> list[Prediction]:
    """Every annotated instance as a prediction: its keypoints (+ Gaussian
    noise of `noise` px), score 1 where labelled, its box."""
    rng = np.random.default_rng(seed)
    out = []
    for image in gt.data["images"]:
        anns = [a for a in gt.data["annotations"] if a["image_id"] == image["id"] and a.get("num_keypoints", 1)]
        kpts = np.array([annotation_keypoints(a) for a in anns]).reshape(len(anns), -1, 3)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        xy = kpts[..., :2] + rng.normal(0, noise, kpts[..., :2].shape) if noise else kpts[..., :2]
        scores = np.where(kpts[..., 2] > 0, 1.0, 0.0) if not noise else rng.uniform(0.3, 1.0, kpts[..., 2].shape)
        out.append(Prediction(image["id"], xy.astype(np.float32), scores.astype(np.float32),
                              boxes.astype(np.float32), np.ones(len(anns), np.float32)))
    return out


# -- ground truth fed back ----------------------------------------------------------

def test_body_ground_truth_scores_ap_1():
    gt = load_ground_truth(BODY)
    values = score(choose_metric(gt, load_entry("rtmpose_t"), "box"), gt, predictions_from(gt))
    assert values["AP"] == pytest.approx(1.0) and values["AR"] == pytest.approx(1.0)


def test_wholebody_ground_truth_scores_ap_1_for_every_part():
    gt = load_ground_truth(WHOLEBODY)
    values = score(choose_metric(gt, load_entry("rtmw_m"), "box"), gt, predictions_from(gt))
    for part in ("body ", "foot ", "face ", "left_hand ", "right_hand ", ""):
        assert values[f"{part}AP"] == pytest.approx(1.0), part


@pytest.mark.parametrize("dataset", sorted(HANDS))
def test_hand_ground_truth_scores_pck_1(dataset):
    gt = load_ground_truth(HANDS[dataset])
    values = score(choose_metric(gt, load_entry("rtmpose_m_hand"), "box"), gt, predictions_from(gt))
    assert values["PCK"] == pytest.approx(1.0) and values["EPE"] == pytest.approx(0.0)
    # MMPose's AUC averages PCK over 20 thresholds from 0 px: none passes 0
    assert values["AUC"] == pytest.approx(19 / 20)
    assert values["matched_instances"] == values["gt_instances"] == len(gt.data["annotations"])


def test_face_ground_truth_scores_nme_0(tmp_path):
    gt = load_ground_truth(face_file(tmp_path))
    spec = choose_metric(gt, load_entry("rtmpose_m_face"), "box")
    values = score(spec, gt, predictions_from(gt))
    assert gt.kind == "face" and spec.main == "NME"
    assert values["NME"] == pytest.approx(0.0)
    assert values["matched_instances"] == values["gt_instances"] == len(gt.data["annotations"]) == 4


# -- the same numbers as MMPose's metric classes and COCOeval ------------------------

def run_metric_directly(metric, dataset_file: str, predictions, samples):
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    metric.dataset_meta = parse_pose_metainfo(dict(from_file=dataset_file))
    metric.process([], samples)
    return metric.compute_metrics(metric.results)


def topdown_samples(predictions, input_size=(192, 256)) -> list[dict]:
    """What MMPose's top-down test loop hands CocoMetric: one sample per box,
    its crop scale from MMPose's own GetBBoxCenterScale + TopdownAffine."""
    from mmpose.datasets.transforms import GetBBoxCenterScale, TopdownAffine
    samples = []
    for pred in predictions:
        for i in range(len(pred.keypoints)):
            info = GetBBoxCenterScale(padding=1.25).transform({"bbox": pred.boxes[i:i + 1]})
            info = TopdownAffine(input_size=input_size).transform(
                {**info, "img": np.zeros((8, 8, 3), np.uint8), "bbox_rotation": np.zeros(1)})
            samples.append({"id": len(samples), "img_id": pred.image_id,
                            "pred_instances": {"keypoints": pred.keypoints[i:i + 1],
                                               "keypoint_scores": pred.keypoint_scores[i:i + 1],
                                               "bbox_scores": pred.box_scores[i:i + 1]},
                            "gt_instances": {"bbox_scales": info["bbox_scale"]}})
    return samples


def test_body_metrics_equal_cocometric_and_cocoeval_by_hand(tmp_path):
    from mmpose.evaluation.metrics import CocoMetric
    from xtcocotools.coco import COCO as XCOCO
    from xtcocotools.cocoeval import COCOeval
    gt = load_ground_truth(BODY)
    predictions = predictions_from(gt, noise=4.0)
    ours = score(choose_metric(gt, load_entry("rtmpose_t"), "box"), gt, predictions)
    direct = run_metric_directly(CocoMetric(ann_file=str(BODY), outfile_prefix=str(tmp_path / "direct")),
                                 "configs/_base_/datasets/coco.py", predictions, topdown_samples(predictions))
    assert 0.05 < ours["AP"] < 0.99  # the noise matters, and not everything is lost
    for name, value in direct.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    # COCOeval by hand: MMPose's rescoring (box score x mean keypoint score above 0.2)
    results = []
    for pred in predictions:
        for kpts, scores, box_score in zip(pred.keypoints, pred.keypoint_scores, pred.box_scores):
            confident = scores[scores > 0.2]
            results.append({"image_id": pred.image_id, "category_id": 1,
                            "keypoints": np.concatenate([kpts, scores[:, None]], 1).reshape(-1).tolist(),
                            "score": float(box_score * (confident.mean() if len(confident) else 0))})
    (tmp_path / "results.json").write_text(json.dumps(results))
    coco = XCOCO(str(BODY))
    sigmas = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
    by_hand = COCOeval(coco, coco.loadRes(str(tmp_path / "results.json")), "keypoints", sigmas, use_area=True)
    by_hand.params.useSegm = None
    by_hand.evaluate()
    by_hand.accumulate()
    by_hand.summarize()
    assert ours["AP"] == pytest.approx(by_hand.stats[0], abs=1e-6)
    assert ours["AR"] == pytest.approx(by_hand.stats[5], abs=1e-6)


def test_wholebody_metrics_equal_cocowholebodymetric(tmp_path):
    from mmpose.evaluation.metrics import CocoWholeBodyMetric
    gt = load_ground_truth(WHOLEBODY)
    predictions = predictions_from(gt, noise=3.0)
    ours = score(choose_metric(gt, load_entry("rtmw_m"), "box"), gt, predictions)
    direct = run_metric_directly(CocoWholeBodyMetric(ann_file=str(WHOLEBODY), outfile_prefix=str(tmp_path / "d")),
                                 "configs/_base_/datasets/coco_wholebody.py", predictions,
                                 topdown_samples(predictions))
    assert 0.01 < ours["AP"] < 0.99
    for name, value in direct.items():  # MMPose returns the whole body's stats
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    assert len({ours[f"{p} AP"] for p in ("body", "foot", "face", "left_hand", "right_hand")}) > 1


def test_hand_metrics_equal_pck_auc_epe():
    from mmpose.evaluation.metrics import AUC, EPE, PCKAccuracy
    gt = load_ground_truth(HANDS["onehand10k"])
    predictions = predictions_from(gt, noise=25.0)
    ours = score(choose_metric(gt, load_entry("rtmpose_m_hand"), "box"), gt, predictions)
    samples = []
    for pred in predictions:  # one hand per image here; each prediction is its annotation's
        (ann,) = [a for a in gt.data["annotations"] if a["image_id"] == pred.image_id]
        kpts = np.array(ann["keypoints"], np.float32).reshape(1, -1, 3)
        x, y, w, h = ann["bbox"]
        samples.append({"pred_instances": {"keypoints": pred.keypoints},
                        "gt_instances": {"keypoints": kpts[..., :2], "keypoints_visible": np.minimum(1, kpts[..., 2]),
                                         "bboxes": np.array([[x, y, x + w, y + h]], np.float32)}})
    for metric in (PCKAccuracy(thr=0.2), AUC(), EPE()):
        metric.process([], samples)
        for name, value in metric.compute_metrics(metric.results).items():
            assert ours[name] == pytest.approx(value, abs=1e-6), name
    assert 0.0 < ours["PCK"] < 1.0


def test_face_metric_equals_nme(tmp_path):
    from mmpose.evaluation.metrics import NME
    gt = load_ground_truth(face_file(tmp_path))
    predictions = predictions_from(gt, noise=3.0)
    ours = score(choose_metric(gt, load_entry("rtmpose_m_face"), "box"), gt, predictions)
    samples = []
    for pred in predictions:  # each prediction is its annotation's, in order
        anns = [a for a in gt.data["annotations"] if a["image_id"] == pred.image_id]
        for i, ann in enumerate(anns):
            kpts = np.array(ann["keypoints"], np.float32).reshape(1, -1, 3)
            x, y, w, h = ann["bbox"]
            samples.append({"pred_instances": {"keypoints": pred.keypoints[i:i + 1]},
                            "gt_instances": {"keypoints": kpts[..., :2], "keypoints_visible": np.minimum(1, kpts[..., 2]),
                                             "bboxes": np.array([[x, y, x + w, y + h]], np.float32)}})
    direct = run_metric_directly(NME(norm_mode="keypoint_distance"), "configs/_base_/datasets/coco_wholebody_face.py",
                                 predictions, samples)
    assert ours["NME"] == pytest.approx(direct["NME"], rel=1e-6) and ours["NME"] > 0


# -- in a run -------------------------------------------------------------------------

@pytest.fixture
def body(make_checkpoint, cache_dir, tmp_path):
    pose = make_checkpoint("rtmpose_t")
    runs = iter(range(100))

    def run(input, *overrides):
        return runner.run(recipe="body_rtmpose", input=input, output_dir=tmp_path / "runs" / str(next(runs)),
                          overrides=["pose/model=rtmpose_t", f"pose.model.checkpoint={pose[1]}",
                                     f"cache.dir={cache_dir}", *overrides])
    return run


def mmpose_topdown_instances(ann_file) -> list[dict]:
    """The ground-truth instances MMPose's own top-down test set makes of an
    annotation file (BaseCocoStyleDataset: boxes clipped to the image; crowd,
    keypoint-less and empty-box annotations left out)."""
    from mmpose.datasets import CocoDataset
    dataset = CocoDataset(ann_file=str(ann_file), data_mode="topdown", test_mode=True, pipeline=[],
                          data_prefix=dict(img=""), serialize_data=False)
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_gt_boxes_are_mmposes_ground_truth_boxes_and_the_scores_land_in_metrics_json(body, forwards):
    result = body(COCO, "detect/model=gt", f"eval.ann_file={BODY}")
    data = json.loads(BODY.read_text())
    ids = {im["file_name"]: im["id"] for im in data["images"]}
    theirs = mmpose_topdown_instances(BODY)
    assert len(theirs) == 12 < len(data["annotations"])  # two annotations without keypoints are left out
    for record in result.records:
        expected = [i["bbox"][0] for i in theirs if i["img_id"] == ids[record["id"]]]
        np.testing.assert_array_equal(np.array([i["bbox"] for i in record["instances"]], np.float32).reshape(-1, 4),
                                      np.array(expected, np.float32).reshape(-1, 4))
        assert all(i["bbox_score"] == 1 for i in record["instances"])
    assert forwards["TopdownPoseEstimator"] == len(theirs) and "RTMDet" not in forwards
    saved = json.loads((result.out_dir / "metrics.json").read_text())
    assert saved == result.metrics == result.manifest["metrics"]
    assert saved["main"] == "AP" and saved["kind"] == "coco" and saved["images"]["matched"] == 4
    assert set(saved["values"]) >= {"AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR"}
    evaluated = result.stages["evaluate"]
    assert (evaluated["units"], evaluated["cache_hits"], evaluated["computed"]) == (1, 0, 1)
    assert evaluated["reads"]["files"]["ground truth"]["sha256"] == hashlib.sha256(BODY.read_bytes()).hexdigest()
    assert evaluated["reads"]["params"]["metric"]["kind"] == "coco" and "xtcocotools" in evaluated["reads"]["libs"]
    again = body(COCO, "detect/model=gt", f"eval.ann_file={BODY}")
    assert again.stages["evaluate"]["computed"] == 0 and again.stages["evaluate"]["cache_hits"] == 1
    assert again.metrics["values"] == saved["values"]
    changed = body(COCO, "detect/model=gt", f"eval.ann_file={BODY}", "visualize.kpt_thr=0.5")
    assert changed.stages["evaluate"]["cache_hits"] == 1  # the predictions did not change


def test_gt_boxes_are_clipped_to_the_image_and_empty_ones_left_out_as_mmpose_does(body, tmp_path):
    """Boxes over the image's edge, a box wholly outside it, a crowd region:
    what MMPose's top-down test set keeps of them, box for box."""
    data = json.loads(BODY.read_text())
    first = data["images"][0]
    extra = [{"bbox": [-20.5, -10.0, 100.0, 80.0]}, {"bbox": [first["width"] - 30.0, 5.0, 90.0, 50.0]},
             {"bbox": [first["width"] + 10.0, 5.0, 20.0, 20.0]}, {"bbox": [10.0, 10.0, 50.0, 50.0], "iscrowd": 1}]
    template = next(a for a in data["annotations"] if a["image_id"] == first["id"])
    for n, more in enumerate(extra):
        data["annotations"].append({**template, "id": 900000 + n, "iscrowd": 0, **more})
    path = tmp_path / "edges.json"
    path.write_text(json.dumps(data))
    result = body(COCO / first["file_name"], "detect/model=gt", f"eval.ann_file={path}")
    expected = [i["bbox"][0] for i in mmpose_topdown_instances(path) if i["img_id"] == first["id"]]
    assert len(expected) == 3  # the annotation's own box and the two clipped ones
    np.testing.assert_array_equal(np.array([i["bbox"] for i in result.records[0]["instances"]], np.float32),
                                  np.array(expected, np.float32))


def test_an_annotation_file_that_names_one_file_under_two_ids_is_refused(body, tmp_path, forwards):
    data = json.loads(BODY.read_text())
    data["images"].append({**data["images"][0], "id": 123456789})  # the same file again, without annotations
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(data))
    name = data["images"][0]["file_name"]
    with pytest.raises(RunnerError, match=rf"names {name} under two image ids \({data['images'][0]['id']} and "
                                          r"123456789\): .*one id per image"):
        body(COCO, f"eval.ann_file={path}", "detect/model=whole_image")
    assert forwards == {}  # found out before any model ran


def test_a_partial_match_says_how_many_matched(body, tmp_path):
    import shutil
    folder = tmp_path / "some"
    folder.mkdir()
    for path in sorted(COCO.glob("*.jpg"))[:2]:
        shutil.copy(path, folder)
    shutil.copy(DATA / "sunglasses.jpg", folder)
    result = body(folder, "detect/model=gt", f"eval.ann_file={BODY}")
    assert result.metrics["images"] == {"inputs": 3, "matched": 2, "ground_truth": 4,
                                        "unmatched": ["sunglasses.jpg"]}
    from runner.pipeline import summary
    assert "on 2 of 3 images (1 input(s) not in the ground truth)" in summary(result, dry_run=False)


def test_an_annotation_file_that_matches_nothing_is_one_clear_error(body, forwards):
    with pytest.raises(RunnerError, match=r"eval.ann_file .*test_coco.json matches none of the 4 input"):
        body(DATA / "onehand10k", f"eval.ann_file={BODY}", "detect/model=whole_image")
    assert forwards == {}  # found out before any model ran


@pytest.mark.parametrize("content,message", [
    ([{"joints": [[1, 2]] * 16, "image": "a.jpg"}], "MPII-style file"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "crowdIndex": 0.1}],
      "annotations": [{"image_id": 1, "keypoints": [0] * 42}], "categories": []}, "CrowdPose file"),
    ({"images": [], "annotations": [{"image_id": 1, "keypoints": [0] * 30}]}, "has 10 keypoints per annotation"),
    ({"foo": 1}, "not a COCO-style file"),
])
def test_files_we_cannot_score_are_named(tmp_path, content, message):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(content))
    with pytest.raises(RunnerError, match=message):
        load_ground_truth(path)


def test_a_model_that_does_not_predict_the_files_keypoints_is_refused():
    with pytest.raises(RunnerError, match="cannot score rtmpose_m_hand .* on .*test_coco.json"):
        choose_metric(load_ground_truth(BODY), load_entry("rtmpose_m_hand"), "box")


def test_gt_detector_without_ann_file_says_what_to_pass(body):
    with pytest.raises(RunnerError, match="detect/model=gt takes its boxes from eval.ann_file"):
        body(COCO, "detect/model=gt")

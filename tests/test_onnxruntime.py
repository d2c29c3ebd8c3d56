"""backend=onnxruntime: the networks exported by the runner and run by ONNX
Runtime give MMPose's own PyTorch results within the float32 tolerance, for
every family; exports are cached; the backend is part of the model stages' keys.

Tolerance: ONNX Runtime sums in another order than PyTorch (other kernels,
BatchNorm folded into the convolutions), which is the reordering that
tests/reference.py reasons about: for the same boxes, keypoint scores within
REORDER_RTOL of their output's scale, keypoints decided by a clear maximum
within COORD_ATOL px (near-ties are counted, not compared). Detectors: boxes
within 0.5 px and scores within 5e-3. RTMO decodes keypoints by an argmax over
bins that are nearly flat with untrained weights, and its boxes come from the
same network: at least 90% of its keypoints within 0.1 px, every score within
1e-3."""
from __future__ import annotations

import numpy as np
import pytest

import runner
from conftest import COCO, DATA
from reference import Compared, assert_instances_match, decoding_margins, load_pose_model, match_boxes

DETECTIONS = COCO / "test_coco_det_AP_H_56.json"


@pytest.fixture
def both_backends(make_checkpoint, cache_dir, onnx_dir, tmp_path):
    """run(recipe, input, *overrides) -> {backend: result}, same cache and checkpoints."""

    def run(recipe, input, *overrides, models=()):
        args = [f"cache.dir={cache_dir}", f"backend.dir={onnx_dir}", *overrides]
        for name in models:
            args.append(f"+download.checkpoints.{name}={make_checkpoint(name)[1]}")
        return {b: runner.run(recipe=recipe, input=input, overrides=[*args, f"backend={b}"],
                              output_dir=tmp_path / b) for b in ("pytorch", "onnxruntime")}

    return run


def pairs(results, bbox_thr: float, nms_thr: float | None) -> list[tuple[dict, dict]]:
    """(PyTorch instance, ONNX Runtime instance) pairs whose boxes match (tests/reference.py)."""
    torch_run, ort_run = results["pytorch"], results["onnxruntime"]
    assert ort_run.manifest["config"]["backend"]["name"] == "onnxruntime"
    out, total = [], 0
    for a, b in zip(torch_run.records, ort_run.records):
        boxes = [np.array([i["bbox"] + [i["bbox_score"]] for i in r["instances"]]) for r in (a, b)]
        out += [(a["instances"][i], b["instances"][j]) for i, j in match_boxes(*boxes, bbox_thr, nms_thr)]
        total += len(a["instances"])
    assert total and len(out) >= 0.9 * total, "too few boxes to compare"
    return out


@pytest.mark.parametrize("recipe,folder,overrides,model", [
    ("body_rtmpose", COCO, ["detect/model=from_file", f"detect.model.path={DETECTIONS}", "pose/model=rtmpose_t"],
     "rtmpose_t"),
    ("hand_rtmpose", DATA / "onehand10k", ["detect/model=whole_image"], "rtmpose_m_hand"),
    ("wholebody_rtmw", COCO, ["detect/model=from_file", f"detect.model.path={DETECTIONS}", "detect.bbox_thr=0.6",
                              "pose/model=rtmw_m"], "rtmw_m"),
])
def test_topdown_families_match_mmpose_pytorch(make_checkpoint, cache_dir, onnx_dir, tmp_path, recipe, folder,
                                               overrides, model):
    """The ONNX Runtime run against inference_topdown with the same checkpoint and boxes."""
    from mmpose.apis import inference_topdown
    path, url = make_checkpoint(model)
    result = runner.run(recipe=recipe, input=folder, output_dir=tmp_path / "out", overrides=[
        f"cache.dir={cache_dir}", f"backend.dir={onnx_dir}", *overrides, f"+download.checkpoints.{model}={url}",
        "backend=onnxruntime"])
    assert result.manifest["config"]["backend"]["name"] == "onnxruntime"
    reference, compared = load_pose_model(model, path), Compared()
    for record in result.records:
        boxes = np.array([inst["bbox"] for inst in record["instances"]], dtype=np.float32).reshape(-1, 4)
        if len(boxes):
            with decoding_margins():
                samples = inference_topdown(reference, record["source"], boxes)
            assert_instances_match(record["instances"], samples, compared)
    compared.assert_mostly_strict()


def test_rtmo_matches_pytorch(both_backends):
    results = both_backends("body_rtmo", COCO, "pose/model=rtmo_s", "detect.bbox_thr=0.1", models=["rtmo_s"])
    moved = []
    # RTMO's own test_cfg keeps boxes above score_thr=0.1 after an NMS at 0.65
    for a, b in pairs(results, bbox_thr=0.1, nms_thr=0.65):
        np.testing.assert_allclose(b["keypoint_scores"], a["keypoint_scores"], atol=1e-3)
        moved += list(np.abs(np.subtract(b["keypoints"], a["keypoints"])).max(-1) > 0.1)
    assert np.mean(moved) <= 0.1


def test_detector_matches_pytorch(both_backends):
    results = both_backends("body_rtmpose", COCO, "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
                            models=["rtmdet_nano_person", "rtmpose_t"])
    pairs(results, bbox_thr=0.3, nms_thr=0.3)


def test_exports_are_cached_and_the_backend_is_in_the_key(make_checkpoint, cache_dir, onnx_dir, tmp_path,
                                                          monkeypatch, forwards):
    from runner.backends import onnxruntime as backend
    from runner.models.loading import load_model
    exports = []
    real_export = backend.export
    monkeypatch.setattr(backend, "export", lambda *a: exports.append(a[1].name) or real_export(*a))
    det, pose = make_checkpoint("rtmdet_nano_person", seed=1), make_checkpoint("rtmpose_t", seed=1)
    args = ["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t", f"cache.dir={cache_dir}",
            f"backend.dir={tmp_path / 'onnx'}", f"detect.model.checkpoint={det[1]}",
            f"pose.model.checkpoint={pose[1]}"]
    photo = sorted(COCO.glob("*.jpg"))[0]

    def run(*more):
        load_model.cache_clear()  # as a new process would: only the files on disk remain
        return runner.run(recipe="body_rtmpose", input=photo, overrides=[*args, *more],
                          output_dir=tmp_path / str(len(exports)) / str(len(more)))

    first = run("backend=onnxruntime")
    assert len(exports) == 2 and first.stages["pose"]["computed"] > 0
    assert run("backend=onnxruntime", "cache.refresh=true").stages["detect"]["computed"] == 1
    assert len(exports) == 2  # the models ran again, from the cached .onnx files
    plan = run("backend=pytorch", "dry_run=true")
    assert plan.stages["detect"]["would_compute"] == {"changed code": 1}
    forwards.clear()
    torch_run = run("backend=pytorch")
    assert forwards["RTMDet"] == 1 and torch_run.stages["pose"]["computed"] == first.stages["pose"]["computed"]
    again = run("backend=onnxruntime")
    assert again.stages["detect"]["computed"] == again.stages["pose"]["computed"] == 0


def test_auto_backend_is_onnxruntime_on_cpu_and_pytorch_on_gpu():
    from runner.errors import RunnerError
    from runner.models.loading import choose_backend
    assert choose_backend("auto", "cpu") == "onnxruntime"
    assert choose_backend("auto", "cuda:0") == "pytorch"
    assert choose_backend("pytorch", "cpu") == "pytorch"
    with pytest.raises(RunnerError, match="backend 'tensorrt' is unknown: use backend=auto, backend=pytorch"):
        choose_backend("tensorrt", "cpu")

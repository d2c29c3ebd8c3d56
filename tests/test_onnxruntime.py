"""backend=onnxruntime: the networks exported by the runner and run by ONNX
Runtime give the PyTorch backend's results within the stated tolerance, for
every family; exports are cached; the backend is part of the model stages' keys.

Tolerance (README): boxes within 0.5 px and scores within 5e-3 for detectors;
for the same boxes, keypoints within 0.05 px and scores within 1e-4 for top-down
models. RTMO decodes keypoints by an argmax over bins that are nearly flat with
untrained weights, so a float-noise tie can move a keypoint: at least 90% of its
keypoints within 0.1 px, every score within 1e-3."""
from __future__ import annotations

import numpy as np
import pytest

import runner
from conftest import COCO, DATA

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


def pairs(results):
    torch_run, ort_run = results["pytorch"], results["onnxruntime"]
    assert ort_run.manifest["config"]["backend"]["name"] == "onnxruntime"
    out = []
    for a, b in zip(torch_run.records, ort_run.records):
        assert len(a["instances"]) == len(b["instances"]), a["id"]
        out += list(zip(a["instances"], b["instances"]))
    assert out, "nothing to compare"
    return out


@pytest.mark.parametrize("recipe,folder,overrides,models", [
    ("body_rtmpose", COCO, ["detect/model=from_file", f"detect.model.path={DETECTIONS}", "pose/model=rtmpose_t"],
     ["rtmpose_t"]),
    ("hand_rtmpose", DATA / "onehand10k", ["detect/model=whole_image"], ["rtmpose_m_hand"]),
    ("wholebody_rtmw", COCO, ["detect/model=from_file", f"detect.model.path={DETECTIONS}", "detect.bbox_thr=0.6",
                              "pose/model=rtmw_m"], ["rtmw_m"]),
    ("hand3d_internet", DATA / "interhand2.6m", [], ["internet_res50"]),
])
def test_topdown_families_match_pytorch(both_backends, recipe, folder, overrides, models):
    for a, b in pairs(both_backends(recipe, folder, *overrides, models=models)):
        assert a["bbox"] == b["bbox"]
        np.testing.assert_allclose(b["keypoints"], a["keypoints"], atol=0.05)
        np.testing.assert_allclose(b["keypoint_scores"], a["keypoint_scores"], atol=1e-4)
        if "keypoints_3d" in a:
            np.testing.assert_allclose(b["keypoints_3d"], a["keypoints_3d"], rtol=1e-4, atol=0.05)
            assert a["handedness"] == b["handedness"]


def test_rtmo_matches_pytorch(both_backends):
    results = both_backends("body_rtmo", COCO, "pose/model=rtmo_s", "detect.bbox_thr=0.1", models=["rtmo_s"])
    moved = []
    for a, b in pairs(results):
        np.testing.assert_allclose(b["bbox"], a["bbox"], atol=0.05)
        np.testing.assert_allclose(b["keypoint_scores"], a["keypoint_scores"], atol=1e-3)
        moved += list(np.abs(np.subtract(b["keypoints"], a["keypoints"])).max(-1) > 0.1)
    assert np.mean(moved) <= 0.1


def test_detector_matches_pytorch(both_backends):
    results = both_backends("body_rtmpose", COCO, "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
                            models=["rtmdet_nano_person", "rtmpose_t"])
    pairs(results)  # as many boxes per image
    for a, b in zip(results["pytorch"].records, results["onnxruntime"].records):
        # near-equal scores may swap places in the score order: match boxes by position
        ours = np.array([i["bbox"] + [i["bbox_score"]] for i in b["instances"]])
        theirs = np.array([i["bbox"] + [i["bbox_score"]] for i in a["instances"]])
        for box in ours:
            nearest = theirs[np.abs(theirs[:, :4] - box[:4]).max(1).argmin()]
            np.testing.assert_allclose(box[:4], nearest[:4], atol=0.5)
            assert abs(box[4] - nearest[4]) < 5e-3


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
    from runner.config import compose_config
    from runner.pipeline import RunContext
    ctx = RunContext(compose_config(["recipe=body_rtmpose", "input=x", "device=cpu"]), None)
    assert ctx.backend("pose") == "onnxruntime"
    ctx.device = "cuda:0"
    assert ctx.backend("pose") == "pytorch"

"""backend=onnxruntime and backend=openvino: the networks exported by the
runner and run by ONNX Runtime or OpenVINO (float32) give MMPose's own PyTorch
results within the float32 tolerance, for every family; exports are cached;
the backend and precision are part of the model stages' keys; reduced
precisions (bf16, f16, int8) drift from float32 by no more than the bounds
BENCHMARKS.md publishes (runner/backends/drift.py).

Tolerance: ONNX Runtime and OpenVINO sum in another order than PyTorch (other
kernels, BatchNorm folded into the convolutions), which is the reordering that
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
def both_backends(make_checkpoint, cache_dir, machine_dir, tmp_path):
    """run(recipe, input, *overrides) -> {backend: result}, same cache and checkpoints."""

    def run(recipe, input, *overrides, models=(), other="onnxruntime"):
        args = [f"cache.dir={cache_dir}", f"cache.machine_dir={machine_dir}", *overrides]
        for name in models:
            args.append(f"+download.checkpoints.{name}={make_checkpoint(name)[1]}")
        return {b: runner.run(recipe=recipe, input=input, overrides=[*args, f"backend={b}"],
                              output_dir=tmp_path / b) for b in ("pytorch", other)}

    return run


def pairs(results, bbox_thr: float, nms_thr: float | None) -> list[tuple[dict, dict]]:
    """(PyTorch instance, other backend's instance) pairs whose boxes match (tests/reference.py)."""
    (other, ort_run), torch_run = [(k, v) for k, v in results.items() if k != "pytorch"][0], results["pytorch"]
    assert ort_run.manifest["backend"]["name"] == other
    out, total = [], 0
    for a, b in zip(torch_run.records, ort_run.records):
        boxes = [np.array([i["bbox"] + [i["bbox_score"]] for i in r["instances"]]) for r in (a, b)]
        out += [(a["instances"][i], b["instances"][j]) for i, j in match_boxes(*boxes, bbox_thr, nms_thr)]
        total += len(a["instances"])
    assert total and len(out) >= 0.9 * total, "too few boxes to compare"
    return out


BODY_BOXES = ["detect/model=from_file", f"detect.model.path={DETECTIONS}", "pose/model=rtmpose_t"]


@pytest.mark.parametrize("recipe,folder,overrides,model,backend", [
    ("body_rtmpose", COCO, BODY_BOXES, "rtmpose_t", "onnxruntime"),
    ("body_rtmpose", COCO, BODY_BOXES, "rtmpose_t", "openvino"),
    ("hand_rtmpose", DATA / "onehand10k", ["detect/model=whole_image"], "rtmpose_m_hand", "onnxruntime"),
    ("wholebody_rtmw", COCO, ["detect/model=from_file", f"detect.model.path={DETECTIONS}", "detect.bbox_thr=0.6",
                              "pose/model=rtmw_m"], "rtmw_m", "onnxruntime"),
])
def test_topdown_families_match_mmpose_pytorch(make_checkpoint, cache_dir, machine_dir, tmp_path, recipe, folder,
                                               overrides, model, backend):
    """The exported network's run against inference_topdown with the same checkpoint and boxes."""
    from mmpose.apis import inference_topdown
    path, url = make_checkpoint(model)
    result = runner.run(recipe=recipe, input=folder, output_dir=tmp_path / "out", overrides=[
        f"cache.dir={cache_dir}", f"cache.machine_dir={machine_dir}", *overrides,
        f"+download.checkpoints.{model}={url}", f"backend={backend}"])
    assert result.manifest["backend"] == {"name": backend, "precision": "f32", "why": f"backend={backend} asked for"}
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


@pytest.mark.parametrize("other", ["onnxruntime", "openvino"])
def test_detector_matches_pytorch(both_backends, other):
    results = both_backends("body_rtmpose", COCO, "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
                            models=["rtmdet_nano_person", "rtmpose_t"], other=other)
    pairs(results, bbox_thr=0.3, nms_thr=0.3)


def test_exports_are_cached_and_the_backend_is_in_the_key(make_checkpoint, cache_dir, machine_dir, tmp_path,
                                                          monkeypatch, forwards):
    from runner.backends import export as backend
    from runner.engines import forget_models
    exports = []
    real_export = backend.export
    monkeypatch.setattr(backend, "export", lambda *a: exports.append(a[1].name) or real_export(*a))
    det, pose = make_checkpoint("rtmdet_nano_person", seed=1), make_checkpoint("rtmpose_t", seed=1)
    args = ["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t", f"cache.dir={cache_dir}",
            f"backend.dir={tmp_path / 'onnx'}", f"detect.model.checkpoint={det[1]}",
            f"pose.model.checkpoint={pose[1]}"]
    photo = sorted(COCO.glob("*.jpg"))[0]

    def run(*more):
        forget_models()  # as a new process would: only the files on disk remain
        return runner.run(recipe="body_rtmpose", input=photo, overrides=[*args, *more],
                          output_dir=tmp_path / str(len(exports)) / str(len(more)))

    first = run("backend=onnxruntime")
    assert len(exports) == 2 and first.stages["pose"]["computed"] > 0
    assert run("backend=onnxruntime", "cache.refresh=true").stages["detect"]["computed"] == 1
    assert len(exports) == 2  # the models ran again, from the cached .onnx files
    plan = run("backend=pytorch", "dry_run=true")
    # another engine: its own code, and its own parameters (the native one's resolved description)
    assert plan.stages["detect"]["would_compute"] == {"changed parameter + changed code": 1}
    forwards.clear()
    torch_run = run("backend=pytorch")
    assert forwards["RTMDet"] == 1 and torch_run.stages["pose"]["computed"] == first.stages["pose"]["computed"]
    again = run("backend=onnxruntime")
    assert again.stages["detect"]["computed"] == again.stages["pose"]["computed"] == 0


def test_the_backend_choice_and_its_one_line_refusals(monkeypatch, tmp_path):
    from omegaconf import OmegaConf
    from runner.backends import openvino
    from runner.errors import RunnerError
    from runner.backends.table import choose_backend

    def choose(device="cpu", tflite=None, **backend):
        return choose_backend(OmegaConf.create({"name": "auto", "precision": "f32", **backend}), device,
                              onnx_files=bool(tflite), tflite_files=tflite)

    # the choice, on a CPU that has bf16 (whether this one has is the last case's concern)
    monkeypatch.setattr(openvino, "capabilities", lambda: ["FP32", "BF16", "INT8"])
    assert (choose().name, choose("cuda:0").name) == ("onnxruntime", "pytorch")  # float32 kept
    assert "the CPU, float32" in choose().why
    assert choose(precision="bf16").name == "openvino" and choose("cuda:0", precision="f16").name == "pytorch"
    assert choose(name="pytorch").why == "backend=pytorch asked for"
    tflite = "pose.model.path=x.tflite"  # a TFLite file: OpenVINO reads it as it is
    assert choose(tflite=tflite).name == "openvino" and tflite in choose(tflite=tflite).why
    assert choose(tflite=tflite, precision="bf16").name == "openvino"
    refusals = {
        "backend 'tensorrt' is unknown: use backend=auto, backend=pytorch": dict(name="tensorrt"),
        "backend=onnxruntime runs float32 only: use backend=openvino": dict(name="onnxruntime", precision="bf16"),
        "int8 is OpenVINO's": dict(name="pytorch", precision="int8"),
        "backend=openvino runs on the CPU here: use device=cpu": dict(name="openvino", device="cuda:0"),
        r"backend.calibration=None is not a folder: backend.precision=int8 needs": dict(precision="int8"),
        "backend.calibration=.* has no images": dict(precision="int8", calibration=str(tmp_path)),
        r"backend=onnxruntime does not read TFLite files \(pose.model.path=x.tflite\): use backend=openvino":
            dict(name="onnxruntime", tflite="pose.model.path=x.tflite"),
        "backend=openvino runs on the CPU here": dict(device="cuda:0", tflite="pose.model.path=x.tflite"),
    }
    for message, asked in refusals.items():
        with pytest.raises(RunnerError, match=message):
            choose(**asked)
    monkeypatch.setattr(openvino, "capabilities", lambda: ["FP32", "INT8"])  # a CPU without bf16
    with pytest.raises(RunnerError, match="this CPU has no native bf16 support .*FP32, INT8.*: use backend.pre"):
        choose(name="openvino", precision="bf16")


def _drift_runs(make_checkpoint, tmp_path, backend, precision, recipe_models):
    """The f32 run and the `precision` run of the same boxes (and the same detector)."""
    overrides, models = recipe_models
    args = [f"cache.dir={tmp_path / 'cache'}", f"backend.dir={tmp_path / 'onnx'}", *overrides,
            *(f"+download.checkpoints.{m}={make_checkpoint(m)[1]}" for m in models)]
    f32 = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / "f32",
                     overrides=[*args, "backend=openvino"])
    reduced = runner.run(recipe="body_rtmpose", input=COCO, output_dir=tmp_path / precision, overrides=[
        *args, f"backend={backend}", f"backend.precision={precision}", f"backend.calibration={COCO}"])
    return f32, reduced


def _cpu_has_bf16() -> bool:
    from runner.backends.openvino import capabilities
    return "BF16" in capabilities()


@pytest.mark.parametrize("backend,precision", [
    ("pytorch", "bf16"),  # autocast: the code a GPU runs in f16; torch runs bf16 on any CPU
    ("openvino", "int8"),
    pytest.param("openvino", "bf16", marks=pytest.mark.skipif(
        not _cpu_has_bf16(), reason="this CPU has no native bf16: OpenVINO cannot run it (the refusal is "
                                    "test_the_backend_choice_and_its_one_line_refusals)")),
])
def test_reduced_precision_drifts_within_the_published_bounds(make_checkpoint, tmp_path, backend, precision):
    """Same checkpoint, images and boxes as a float32 run: it really ran at the
    other precision (its numbers moved), and within the published bounds."""
    from runner.backends.drift import pose_drift, within
    f32, reduced = _drift_runs(make_checkpoint, tmp_path, backend, precision, (BODY_BOXES, ["rtmpose_t"]))
    assert reduced.manifest["backend"]["precision"] == precision and reduced.stages["pose"]["computed"] > 0
    stats = pose_drift(f32.records, reduced.records)
    assert stats["keypoints"] > 500 and not within(stats, precision), stats
    assert stats["score_max"] > 0  # it did run at another precision


def test_bf16_detector_boxes_stay_within_the_published_bound(make_checkpoint, tmp_path):
    from runner.backends.drift import box_drift, within
    f32, reduced = _drift_runs(make_checkpoint, tmp_path, "pytorch", "bf16",
                               (["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t", "recipe.steps=[download,detect]"],
                                ["rtmdet_nano_person", "rtmpose_t"]))
    stats = box_drift(f32.records, reduced.records)
    assert stats["boxes"] >= 50 and not within(stats, "bf16") and stats["iou_median"] >= 0.5, stats


def test_int8_calibration_images_are_read_in_the_order_of_their_content(tmp_path):
    """NNCF's int8 network depends on the order it is given the calibration
    images in (BlazePose's landmarks moved by up to 1.3 px when it was reversed),
    while the keys name the images' content: so the order is the content's, and
    the same images under other names calibrate alike."""
    import shutil
    from runner.backends.openvino import Calibration
    from runner.hashing import sha256_file
    images = sorted(COCO.glob("*.jpg"))
    folders = {"as named": tmp_path / "a", "renamed": tmp_path / "b"}
    for n, path in enumerate(images):
        for kind, folder in folders.items():
            folder.mkdir(exist_ok=True)
            shutil.copy(path, folder / (path.name if kind == "as named" else f"{len(images) - n}_{path.name}"))
    made = {kind: Calibration(str(folder), list) for kind, folder in folders.items()}
    order = {kind: [sha256_file(p) for p in c.paths] for kind, c in made.items()}
    assert made["as named"].digest == made["renamed"].digest and order["as named"] == order["renamed"]
    assert order["as named"] == sorted(order["as named"]) and len(order["as named"]) == len(images)


def test_precision_is_in_the_keys_and_int8_networks_are_cached_and_verified(make_checkpoint, tmp_path, monkeypatch,
                                                                             caplog):
    from runner.backends import openvino
    from runner.engines import forget_models
    made = []
    real = openvino.quantize
    monkeypatch.setattr(openvino, "quantize", lambda *a: made.append(a[1]) or real(*a))
    args = [f"cache.dir={tmp_path / 'cache'}", f"backend.dir={tmp_path / 'onnx'}", *BODY_BOXES,
            f"+download.checkpoints.rtmpose_t={make_checkpoint('rtmpose_t')[1]}", "backend=openvino"]
    int8 = [*args, "backend.precision=int8", f"backend.calibration={COCO}"]

    def run(*overrides):
        forget_models()  # as a new process would: only the files on disk remain
        return runner.run(recipe="body_rtmpose", input=COCO, overrides=list(overrides),
                          output_dir=tmp_path / str(len(made)) / str(len(caplog.records)))

    assert run(*args).stages["pose"]["computed"] == 33
    # int8 reads the calibration images, names NNCF's preset (a parameter) and runs OpenVINO int8 (code)
    assert run(*int8, "dry_run=true").stages["pose"]["would_compute"] == {
        "changed calibration images + changed parameter + changed code": 33}
    assert run(*int8).stages["pose"]["computed"] == 33 and len(made) == 1
    assert run(*int8, "cache.refresh=true").stages["pose"]["computed"] == 33 and len(made) == 1  # IR reused
    made[0].with_suffix(".bin").write_bytes(b"not a network")
    assert run(*int8, "cache.refresh=true").stages["pose"]["computed"] == 33 and len(made) == 2
    assert "is " in caplog.text and "quantizing it again" in caplog.text
    assert run(*args).stages["pose"]["computed"] == 0  # float32 entries untouched


def test_onnx_runtime_keeps_its_optimized_graph_verified_and_gives_the_same_numbers(tmp_path, caplog):
    """A session from the kept optimized graph (backends/network.py) runs the graph
    ONNX Runtime would make anew, on this CPU: the same outputs bit for bit (one
    thread each: the same kernels in the same order); made once, verified before
    each use (weights altered at the same size: made again, with a warning), keyed
    by the network's content."""
    from runner.backends.network import Compiled, Network
    from runner.hashing import sha256_file
    detector = DATA.parent / "weights" / "rtmdet-nano_person_end2end.onnx"
    batch = np.random.default_rng(0).uniform(-2, 2, (1, 3, 320, 320)).astype(np.float32)
    anew = Network(detector, "onnxruntime", 1)(batch)
    kept = Compiled(tmp_path / "onnx", sha256_file(detector))

    def optimized_outputs() -> list[np.ndarray]:
        return Network(detector, "onnxruntime", 1, compiled=kept)(batch)

    for outputs in (optimized_outputs(), optimized_outputs()):
        assert len(outputs) == len(anew) and all(np.array_equal(a, b) for a, b in zip(anew, outputs))
    (graph,) = (tmp_path / "onnx").glob("*.ort-*.onnx")
    weights = graph.with_suffix(".bin")
    stamps = {p: p.stat().st_mtime_ns for p in (graph, weights)}
    Network(detector, "onnxruntime", 1, compiled=kept)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # used as kept, not made again
    data = bytearray(weights.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    weights.write_bytes(bytes(data))
    assert all(np.array_equal(a, b) for a, b in zip(anew, optimized_outputs()))
    assert "optimizing it again" in caplog.text and weights.read_bytes() != bytes(data)
    Network(detector, "onnxruntime", 1, compiled=Compiled(kept.folder, "0" * 64))  # other content: another graph
    assert len(list(kept.folder.glob("*.ort-*.onnx"))) == 2


def test_openvino_keeps_its_compiled_network_checked_and_gives_the_same_numbers(tmp_path, caplog):
    """OpenVINO's compiled networks are kept in a folder of their own in
    backend.dir (its model cache) and checked against their record before each
    use: OpenVINO itself would load a damaged one (other outputs, measured); the
    same outputs bit for bit as compiled anew; used as kept when whole."""
    from runner.backends.network import Compiled, Network
    from runner.hashing import sha256_file
    detector = DATA.parent / "weights" / "rtmdet-nano_person_end2end.onnx"
    batch = np.random.default_rng(0).uniform(-2, 2, (1, 3, 320, 320)).astype(np.float32)
    anew = Network(detector, "openvino", 1)(batch)
    kept = Compiled(tmp_path / "onnx", sha256_file(detector))

    def kept_outputs() -> list[np.ndarray]:
        return Network(detector, "openvino", 1, compiled=kept)(batch)

    for outputs in (kept_outputs(), kept_outputs()):
        assert len(outputs) == len(anew) and all(np.array_equal(a, b) for a, b in zip(anew, outputs))
    (folder,) = [p for p in kept.folder.glob("*.ov-*") if p.is_dir()]
    (blob,) = folder.iterdir()
    stamp = blob.stat().st_mtime_ns
    kept_outputs()
    assert blob.stat().st_mtime_ns == stamp and "compiling it again" not in caplog.text  # used as kept
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = bytes(4096)
    blob.write_bytes(bytes(data))
    assert all(np.array_equal(a, b) for a, b in zip(anew, kept_outputs()))
    assert "compiling it again" in caplog.text and [p.read_bytes() for p in folder.iterdir()] != [bytes(data)]

"""Configuration mistakes fail in one line before any work; a run writes
nothing outside its run folder and the cache."""
from __future__ import annotations

import pytest

from cases import cli, one_line, small_models  # noqa: F401  (small_models is a fixture)
from conftest import COCO, DATA

ONNX_DETECTOR = DATA.parent / "weights" / "rtmdet-nano_person_end2end.onnx"


@pytest.mark.parametrize("args,expected", [
    (["+detect.bbox_thresh=0.5"], "+detect.bbox_thresh: pose-runner takes no new keys"),
    (["-m", "hydra/launcher=joblib", "visualize.kpt_thr=0.1,abc"], "visualize.kpt_thr=abc is not a number"),
    (["visualize.radius=-2"], "visualize.radius=-2 is not a whole number"),
    (["output.overlay_ext=gif"], "output.overlay_ext=gif is not one of jpg"),
    (["max_pixels=0"], "max_pixels=0 is not a positive whole number"),
    (["eval.ann_file=/nowhere/gt.json"], "eval.ann_file=/nowhere/gt.json does not exist"),
    (["recipe=hand3d_internet", "pose.camera.focal=[1500]"], "pose.camera.focal=[1500] is not [fx, fy]"),
    (["pose.camera.focal=abc"], "pose.camera.focal: this recipe has no pose.camera (3D hands (InterNet): the camera; "
                                "null values: assumed from the image): drop it, or use a recipe that has one "
                                "(recipe=hand3d_internet)"),
    (["detect.model=abc"], "detect.model=abc is not a model entry: choose one with detect/model=NAME (from_file, gt,"),
    (["detect/model=onnx", f"detect.model.path={ONNX_DETECTOR}", "detect.model.input_size=abc"],
     "detect.model.input_size=abc is not [w, h]: two positive whole numbers of pixels, or null"),
    (["detect/model=onnx", f"detect.model.path={ONNX_DETECTOR}", "detect.model.input_size=[10]"],
     "detect.model.input_size=[10] is not [w, h]"),
    (["detect/model=onnx", f"detect.model.path={ONNX_DETECTOR}", "detect.model.input_size=[0,256]"],
     "detect.model.input_size=[0, 256] is not [w, h]"),
    (["detect/model=onnx", f"detect.model.path={ONNX_DETECTOR}", "detect.model.std=[58,0,57]"],
     "detect.model.std=[58, 0, 57] is not three positive numbers"),
    (["pose/model=onnx", f"pose.model.path={ONNX_DETECTOR}", "pose.model.simcc_split_ratio=0"],
     "pose.model.simcc_split_ratio=0 is not a positive number"),
    (["recipe=body_rtmo", "pose.flip_test=true"], "pose.flip_test=true: pose/model=rtmo_l has no flip test (MMPose's "
                                                  "rtmo head does not implement one): pass pose.flip_test=null or false"),
    (["-m", "recipe=body_rtmo", "pose/model=rtmo_s", "pose.flip_test=false,true"], "pose/model=rtmo_s has no flip test"),
    (["output.video_fourcc=zzzzz"], "output.video_fourcc=zzzzz is not four characters"),
    (["-m", "output.dir=a,b", "visualize.radius=1,2"], "output.dir=a,b: a sweep has one output.dir, its jobs' folders "
                                                       "are DIR/0, DIR/1, ...: pass one folder"),
])
def test_a_bad_value_fails_in_one_line_before_any_job(tmp_path, args, expected):
    line = one_line(cli(f"input={COCO}", f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
                        f"hydra.sweep.dir={tmp_path / 'sweep'}", *args))
    assert expected in line
    assert not (tmp_path / "cache").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("backend", [["backend=onnxruntime"],
                                     ["backend=openvino", "backend.precision=int8", f"backend.calibration={COCO}"]])
def test_a_run_writes_nothing_outside_its_folder_and_the_cache(small_models, tmp_path, backend):
    """ONNX Runtime's telemetry store, OpenVINO's and NNCF's telemetry id,
    matplotlib's font list and YAPF's grammar cache would go to the home folder."""
    home = tmp_path / "home"
    home.mkdir()
    done = cli(f"input={sorted(COCO.glob('*.jpg'))[0]}", *small_models, *backend,
               f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
               env={"HOME": str(home), "XDG_CACHE_HOME": "", "MPLCONFIGDIR": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
    assert (tmp_path / "cache" / "libraries").is_dir()

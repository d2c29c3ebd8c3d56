"""Configuration mistakes fail in one line before any work; a run writes
nothing outside its run folder and the cache."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cases import EROFS_PROCESS, GOOD, cli, one_line, read_only, small_models, small_models_in_cache  # noqa: F401  (fixtures)
from conftest import COCO, DATA, ROOT, exports_in

IMAGE = GOOD[0]

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
    (["recipe=body_rtmo", "pose.flip_test=true"], "pose.flip_test=true: pose/model=rtmo_l has no flip test (the "
                                                  "rtmo family runs one pass): pass pose.flip_test=null or false"),
    (["-m", "recipe=body_rtmo", "pose/model=rtmo_s", "pose.flip_test=false,true"], "pose/model=rtmo_s has no flip test"),
    (["output.video_fourcc=zzzzz"], "output.video_fourcc=zzzzz is not four characters"),
    (["cache.machine_dir=s3://poses/machine"], "cache.machine_dir=s3://poses/machine: this machine's files "
                                               "(checkpoints, exports, memos) need a folder"),
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
def test_a_run_writes_nothing_outside_its_folder_and_the_cache(small_models, small_models_in_cache, tmp_path, backend):
    """ONNX Runtime's telemetry store, OpenVINO's and NNCF's telemetry id,
    matplotlib's font list and YAPF's grammar cache would go to the home folder."""
    home = tmp_path / "home"
    home.mkdir()
    done = cli(f"input={sorted(COCO.glob('*.jpg'))[0]}", *small_models_in_cache, *backend,
               f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
               env={"HOME": str(home), "XDG_CACHE_HOME": "", "MPLCONFIGDIR": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
    assert (tmp_path / "cache" / "libraries").is_dir()


def test_this_machines_files_go_to_cache_machine_dir_and_only_entries_to_the_cache(small_models_in_cache, tmp_path):
    """cache.machine_dir (a local disk beside a cache on a shared one) holds the
    exports, the memos and the libraries' files; cache.dir the stages' entries."""
    machine = tmp_path / "machine"
    done = cli(f"input={IMAGE}", *small_models_in_cache, "detect/model=whole_image", f"cache.dir={tmp_path / 'cache'}",
               f"cache.machine_dir={machine}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["stages"]
    assert exports_in(machine / "onnx") and (machine / "memo" / "fits").is_dir() and (machine / "libraries").is_dir()


def earlier_run(small_models, tmp_path) -> tuple[Path, dict]:
    out = tmp_path / "run"
    done = cli(f"input={IMAGE}", *small_models, "detect/model=whole_image", f"cache.dir={tmp_path / 'cache'}",
               f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    return out, files_of(out)


def files_of(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("frozen", [".", "predictions", "overlays"])
@pytest.mark.parametrize("means", ["this machine's", "EROFS on every write"])
def test_a_run_folder_that_cannot_be_taken_over_is_one_line_and_the_earlier_run_stays_whole(small_models, tmp_path,
                                                                                            frozen, means):
    """Taking over a folder that holds an earlier run is all or nothing: when
    any of that run's files cannot be removed (a read-only folder or sub-folder),
    the new run refuses in one line and the earlier run is left exactly as it was."""
    out, before = earlier_run(small_models, tmp_path)
    (tmp_path / "probe").mkdir()
    how, run = read_only(out / frozen, tmp_path / "probe")
    if means != "this machine's":
        script = tmp_path / "probe" / "erofs.py"
        script.write_text(EROFS_PROCESS)
        run = lambda args: subprocess.run([sys.executable, str(script), str(out / frozen), *args], cwd=ROOT,
                                          capture_output=True, text=True)
    done = run([f"input={COCO}", *small_models, "detect/model=whole_image", f"cache.dir={tmp_path / 'cache'}",
                f"hydra.run.dir={out}"])
    line = one_line(done)
    assert f"the run folder {out}" in line and ("cannot be written" in line or "cannot be removed" in line), line
    assert files_of(out) == before  # not a byte of the earlier run changed, nothing of the new one written


def test_a_read_only_new_run_folder_is_one_line_before_anything_is_written(small_models, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "probe").mkdir()
    how, run = read_only(out, tmp_path / "probe")
    line = one_line(run([f"input={IMAGE}", *small_models, f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={out}"]))
    assert f"the run folder {out} cannot be written" in line and "hydra.run.dir=DIR" in line
    assert list(out.iterdir()) == [] and not (tmp_path / "cache" / "stages").exists()

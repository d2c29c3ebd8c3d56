"""Configuration mistakes fail in one line before any work; a run writes
nothing outside its run folder and the cache."""
from __future__ import annotations

import pytest

from cases import cli, one_line, small_models  # noqa: F401  (small_models is a fixture)
from conftest import COCO


@pytest.mark.parametrize("args,expected", [
    (["+detect.bbox_thresh=0.5"], "+detect.bbox_thresh: pose-runner takes no new keys"),
    (["-m", "hydra/launcher=joblib", "visualize.kpt_thr=0.1,abc"], "visualize.kpt_thr=abc is not a number"),
    (["visualize.radius=-2"], "visualize.radius=-2 is not a whole number"),
    (["output.overlay_ext=gif"], "output.overlay_ext=gif is not one of jpg"),
    (["max_pixels=0"], "max_pixels=0 is not a positive whole number"),
    (["eval.ann_file=/nowhere/gt.json"], "eval.ann_file=/nowhere/gt.json does not exist"),
    (["recipe=hand3d_internet", "pose.camera.focal=[1500]"], "pose.camera.focal=[1500] is not [fx, fy]"),
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

"""The command line and the Python API as a new user meets them: help, one-line
errors for bad input, bad names and bad keys."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

import runner
from conftest import COCO, ROOT
from runner.config import compose_config
from runner.errors import RunnerError


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True)


def error_line(done) -> str:
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_help_lists_recipes_and_models():
    done = cli("--help")
    assert done.returncode == 0
    (recipes,) = [l for l in done.stdout.splitlines() if l.startswith("recipe: ")]
    for recipe in ("body_rtmpose", "body_rtmo", "hand_rtmpose", "hand3d_internet", "wholebody_rtmw",
                   "wholebody_dwpose", "human", "hand", "wholebody"):
        assert recipe in recipes.split(": ")[1].split(", ")
    for model in ("rtmpose_t", "rtmpose_m", "rtmdet_nano_person", "rtmdet_m_person"):
        assert model in done.stdout


@pytest.mark.parametrize("args,expected", [
    (["recipe=bodyy", "input=x"], "unknown recipe 'bodyy': choose one of body_rtmo, body_rtmpose, face_rtmpose, hand,"),
    (["pose/model=rtmpose_xl", "input=x"], "unknown pose/model 'rtmpose_xl': choose one of blazepose_full, dwpose_l"),
    (["detect/model=yolo", "input=x"], "unknown detect/model 'yolo'"),
    (["detect.bbox_th=0.5", "input=x"], "unknown key 'detect.bbox_th': 'detect' has model, bbox_thr"),
    (["-m", "detect.bbox_thr=0.3,0.5", "pose/model=rtmpose_t,nope", "input=x"], "unknown pose/model 'nope'"),
    (["input=a\nb c"], "cannot read the override 'input=a"),
])
def test_bad_names_and_keys_fail_in_one_line(args, expected):
    line = error_line(cli(*args))
    assert expected in line


def test_missing_input_is_named(tmp_path):
    line = error_line(cli(f"input={tmp_path / 'nowhere'}", f"cache.dir={tmp_path}"))
    assert "nowhere does not exist" in line and "input=PATH" in line
    line = error_line(cli(f"cache.dir={tmp_path}"))
    assert "no input: pass input=PATH" in line


def test_out_of_range_values_are_named(tmp_path):
    line = error_line(cli(f"input={COCO}", "detect.bbox_thr=3", f"cache.dir={tmp_path}"))
    assert "detect.bbox_thr=3 is not a number between 0 and 1" in line


def test_offline_download_fails_in_one_line(tmp_path):
    line = error_line(cli(f"input={COCO}", f"cache.dir={tmp_path}", "hydra.run.dir=" + str(tmp_path / "run")))
    assert "cannot download https://download.openmmlab.com/" in line
    assert "download.mirror=FOLDER" in line


def test_corrupt_image_fails_alone(make_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sorted(COCO.glob("*.jpg"))[0], folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    det, pose = make_checkpoint("rtmdet_nano_person"), make_checkpoint("rtmpose_t")
    args = ["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t", f"cache.dir={tmp_path / 'c'}",
            f"detect.model.checkpoint={det[1]}", f"pose.model.checkpoint={pose[1]}"]
    done = cli(f"input={folder}", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 1
    assert "broken.jpg" in done.stdout and "corrupt" in done.stdout
    assert (tmp_path / "run" / "overlays" / "000000000785.jpg").exists()
    result = runner.run(recipe="body_rtmpose", input=folder, overrides=args, output_dir=tmp_path / "api")
    assert [f["id"] for f in result.failed] == ["broken.jpg"]
    assert result.stages["detect"]["cache_hits"] == 1  # the good image, from the CLI run


def test_dry_run_prints_the_plan_and_runs_nothing(make_checkpoint, tmp_path):
    det, pose = make_checkpoint("rtmdet_nano_person"), make_checkpoint("rtmpose_t")
    done = cli(f"input={COCO}", "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
               f"cache.dir={tmp_path / 'c'}", f"detect.model.checkpoint={det[0]}",
               f"pose.model.checkpoint={pose[0]}", "dry_run=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr
    assert "dry run: no model was run" in done.stdout
    assert re.search(r"detect\s+4\s+0\s+4\s+4 new input", done.stdout), done.stdout
    assert not (tmp_path / "c" / "stages").exists()


def test_api_returns_the_exported_records(make_checkpoint, tmp_path):
    det, pose = make_checkpoint("rtmdet_nano_person"), make_checkpoint("rtmpose_t")
    result = runner.run(recipe="body_rtmpose", input=sorted(COCO.glob("*.jpg"))[0], output_dir=tmp_path / "o",
                        overrides=["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
                                   f"cache.dir={tmp_path / 'c'}", f"detect.model.checkpoint={det[1]}",
                                   f"pose.model.checkpoint={pose[1]}"])
    assert len(result.records) == 1 and result.records[0]["id"] == "000000000785.jpg"
    assert result.out_dir == tmp_path / "o" and (tmp_path / "o" / "manifest.json").exists()


def test_api_errors_are_runner_errors():
    with pytest.raises(RunnerError, match="unknown recipe 'nope'"):
        runner.run(recipe="nope", input=COCO)


def test_composed_config_has_one_group_per_concern():
    cfg = compose_config(["recipe=body_rtmpose"])
    assert cfg.detect.model.name == "rtmdet_m_person" and cfg.pose.model.name == "rtmpose_m"
    assert list(cfg.recipe.steps) == ["download", "detect", "pose", "visualize", "export"]
    assert cfg.device.type == "auto" and cfg.cache.refresh is False
    override = compose_config(["recipe=body_rtmpose", "pose/model=rtmpose_t", "device=cpu"])
    assert override.pose.model.name == "rtmpose_t" and override.device.type == "cpu"


def test_missing_webcam_is_one_line(make_checkpoint, tmp_path):
    pose = make_checkpoint("rtmpose_t")
    line = error_line(cli("input=webcam:7", "detect/model=whole_image", "pose/model=rtmpose_t",
                          f"pose.model.checkpoint={pose[0]}", f"cache.dir={tmp_path}",
                          f"hydra.run.dir={tmp_path / 'run'}"))
    assert "cannot open webcam 7: no camera at that index" in line


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweep_with_a_failed_item_exits_non_zero_with_every_launcher(make_checkpoint, tmp_path, launcher):
    """The exit status comes from what the jobs report (their manifests), not
    from a counter in the parent process that joblib's workers never touch."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sorted(COCO.glob("*.jpg"))[0], folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    det, pose = make_checkpoint("rtmdet_nano_person"), make_checkpoint("rtmpose_t")
    done = cli("-m", f"hydra/launcher={launcher}", f"input={folder}", "detect/model=rtmdet_nano_person",
               "pose/model=rtmpose_t", f"cache.dir={tmp_path / 'c'}", f"detect.model.checkpoint={det[0]}",
               f"pose.model.checkpoint={pose[0]}", "detect.bbox_thr=0.3,0.5",
               f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(list((tmp_path / "sweep").glob("*/manifest.json"))) == 2

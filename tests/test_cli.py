"""The command line and the Python API as a new user meets them: help, one-line
errors for bad input, bad names and bad keys."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

import runner
from conftest import COCO, DATA, ROOT
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


@pytest.mark.parametrize("args,expected", [
    (["input=a,b"], "input=a,b: a comma makes a sweep, which runs with -m; for one value with a comma, quote it: "
                    "input='a,b'"),
    (["input=x", "dry_run=1"], "dry_run=1 is not true or false"),
    (["input=x", "dry_run=yes"], "dry_run=yes is not true or false"),
    (["input=x", "show=2"], "show=2 is not true or false"),
    (["input=x", "-m", "cache.refresh=true,0"], "cache.refresh=0 is not true or false"),
    (["input=x", "pose.flip_test=0"], "pose.flip_test=0 is not true, false or null"),
    (["input=x", "detect/model=onnx", "detect.model.path={folder}"],
     "detect.model.path={folder} is a folder: pass the .onnx file in it"),
    (["input=x", "pose/model=onnx", "pose.model.path={folder}"],
     "pose.model.path={folder} is a folder: pass the .onnx file in it"),
    (["input=x", "pose/model=onnx", "+download.checkpoints.onnx={folder}"],
     "download.checkpoints.onnx={folder} is a folder: pass the .onnx file in it"),
    (["input=x", "detect/model=onnx", "pose/model=onnx", "+download.checkpoints.onnx=x.onnx"],
     "+download.checkpoints.onnx would be both the detector's and the pose model's file"),
    (["input={folder}/nowhere", "max_frames=1e3", "detect.batch_size=2e0"], "{folder}/nowhere does not exist"),
])
def test_words_of_a_bad_value(tmp_path, args, expected):
    line = error_line(cli(*(a.format(folder=tmp_path) for a in args), f"cache.dir={tmp_path / 'c'}",
                          f"hydra.run.dir={tmp_path / 'run'}"))
    assert expected.format(folder=tmp_path) in line


def test_a_whole_number_written_as_a_float_is_that_number():
    from runner.config import command_line
    assert compose_config(["input=x", "detect.batch_size=1e3", "max_frames=2.0"]).detect.batch_size == 1000
    assert command_line(["-m", "detect.batch_size=1e3,8", "pose.batch_size=choice(2e1,4)", "input=x"]) == \
        ["-m", "detect.batch_size=1000,8", "pose.batch_size=choice(20,4)", "input=x"]
    with pytest.raises(RunnerError, match="detect.batch_size=2.5 is not a positive whole number"):
        compose_config(["input=x", "detect.batch_size=2.5"])


@pytest.mark.parametrize("where", ["recipe", "pose/model"])
def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, monkeypatch, where):
    import runner.config as config
    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf, symlinks=True)
    shutil.copytree(config.CONF_DIR / "recipe", tmp_path / "recipes")
    monkeypatch.setattr(config, "CONF_DIR", conf)
    broken = conf / where / ("body_rtmpose.yaml" if where == "recipe" else "rtmpose_m.yaml")
    broken.write_text(broken.read_text() + "oops: [unclosed, list\nnext: 1\n")
    lines = broken.read_text().splitlines()
    with pytest.raises(RunnerError) as refused:
        compose_config(["input=x"])
    message = str(refused.value)
    assert f"{broken.resolve()}, line {len(lines)}, column" in message and "not valid YAML" in message
    assert "fix the file" in message and "\n" not in message


def test_output_dir_is_the_run_folder_of_a_run_and_of_a_sweep(make_checkpoint, tmp_path):
    pose = make_checkpoint("rtmpose_t")[0]
    args = [f"input={sorted(COCO.glob('*.jpg'))[0]}", "detect/model=whole_image", "pose/model=rtmpose_t",
            f"pose.model.checkpoint={pose}", f"cache.dir={tmp_path / 'c'}"]
    done = cli(*args, f"output.dir={tmp_path / 'one'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "one" / "manifest.json").is_file() and (tmp_path / "one" / "predictions").is_dir()
    done = cli("-m", *args, f"output.dir={tmp_path / 'sweep'}", "visualize.radius=2,3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/manifest.json")) == ["0", "1"]
    line = error_line(cli(*args, f"output.dir={tmp_path / 'a'}", f"hydra.run.dir={tmp_path / 'b'}"))
    assert f"output.dir={tmp_path / 'a'} and hydra.run.dir={tmp_path / 'b'} name two run folders" in line


def test_an_onnx_file_given_as_download_checkpoints_runs_as_its_path(make_checkpoint, tmp_path):
    """README: a sweep across ONNX files may give each as +download.checkpoints.onnx=FILE."""
    detector = DATA.parent / "weights" / "rtmdet-nano_person_end2end.onnx"
    out = tmp_path / "run"
    done = cli(f"input={sorted(COCO.glob('*.jpg'))[0]}", "detect/model=onnx", f"+download.checkpoints.onnx={detector}",
               "pose/model=rtmpose_t", f"pose.model.checkpoint={make_checkpoint('rtmpose_t')[0]}",
               f"cache.dir={tmp_path / 'c'}", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads((out / "manifest.json").read_text())
    assert written["checkpoints"]["detect"]["file"] == str(detector.resolve())  # the file, not a link to it
    assert written["stages"]["detect"]["computed"] == 1 and json.loads(
        (out / "predictions" / "000000000785.jpg.json").read_text())


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

"""One run's config, composed without Hydra's machinery (runner/compose.py),
is the config Hydra composes: every recipe, group choices on the command line
and in recipes, and the kinds of value people type. What it does not handle
goes to Hydra (and its errors are Hydra's, in one line); nothing is kept
between runs, so a changed recipe or schema default is seen at once."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf, open_dict

from conftest import ROOT
from runner import compose, config
from runner.errors import RunnerError

RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))

COMMAND_LINES = [
    *[[f"recipe={r}", "input=photos/"] for r in RECIPES],
    ["input=x.jpg"],  # conf/config.yaml's recipe
    ["recipe=wholebody", "input=x", "pose/model=dwpose_m", "detect/model=rtmdet_nano_person"],
    ["recipe=hand", "input=x", "detect/model=gt", "eval.ann_file=gt.json"],
    ["recipe=body_rtmpose", "input=../shared/data/coco", "detect.bbox_thr=0.5", "detect.nms_thr=.4",
     "pose.batch_size=8", "visualize.kpt_thr=1e-1", "pose.flip_test=false", "max_frames=null",
     "device=cpu", "backend=openvino", "backend.precision=bf16"],
    ["recipe=body_rtmpose", "input='/data/my photos, 2024/'", 'cache.dir="/tmp/a b"', "output.overlay_ext=png"],
    ["recipe=body_rtmpose", "input=x", "detect/model=onnx", "detect.model.path=/m/end2end.onnx",
     "detect.model.input_size=[640,640]", "detect.model.mean=[0,0,0]", "detect.model.bgr_to_rgb=TRUE"],
    ["recipe=body_rtmpose", "input=x", "+download.checkpoints.rtmpose_m=/w/mine.pth", "pose/model=rtmpose_m"],
    ["recipe=hand3d_internet", "input=x", "pose.camera.focal=[1500,1500]", "pose.camera.root_depth=600.5"],
    ["recipe=body_rtmpose", "input=x", "hydra.run.dir=/tmp/run-1", "cache.dir=${oc.env:HOME}/c"],
    ["recipe=body_rtmpose", "input=x", "output.dir=/tmp/out", "frame_stride=+2", "max_pixels=1_000_000"],
    ["recipe=body_rtmpose", "input=x", "export.table=parquet", "smooth.method=butterworth", "track.enabled=True"],
]


def hydras(args: list[str]) -> tuple[dict, str]:
    full = config.compose_config(args, with_hydra=True)
    run_dir = OmegaConf.to_container(full.hydra.run, resolve=False)["dir"]
    with open_dict(full):
        del full["hydra"]
    return OmegaConf.to_container(full, resolve=False), run_dir


@pytest.mark.parametrize("args", COMMAND_LINES, ids=lambda a: " ".join(a)[:70])
def test_a_plain_command_line_is_composed_as_hydra_composes_it(args):
    fast = compose.compose_fast(args)
    assert fast is not None, "a plain command line must not need Hydra"
    cfg, run_dir = fast
    assert (OmegaConf.to_container(cfg, resolve=False), run_dir) == hydras(args)
    assert OmegaConf.is_struct(cfg)


@pytest.mark.parametrize("args", [
    ["recipe=body_rtmpose", "input=x", "detect.bbox_thr=0.3,0.5"],           # a sweep's values
    ["recipe=body_rtmpose", "input=x", "~detect.nms_thr"],                   # deleting a key
    ["recipe=body_rtmpose", "input=x", "detect.model.mean={a: 1}"],          # a dict value
    ["recipe=body_rtmpose", "input=C:\\\\photos"],                            # escapes
    ["recipe=body_rtmpose", "input=x", "hydra.job.chdir=true"],              # Hydra's own keys
    ["recipe=nope", "input=x"], ["recipe=body_rtmpose", "pose/model=nope"],  # errors Hydra words
    ["recipe=body_rtmpose", "input=x", "detect.bbox_tr=0.3"],
    ["recipe=body_rtmpose", "input=x", "+download.checkpoints.rtmpose_m=a", "+download.checkpoints.rtmpose_m=b"],
])
def test_what_it_does_not_handle_goes_to_hydra(args):
    assert compose.compose_fast(args) is None


def test_typed_values_follow_hydras_grammar():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parser = OverridesParser.create()
    for text in ["1", "-3", "+2", "1_000", "0", "1.5", ".5", "5.", "1e3", "1E-3", "-1.5e+2", "inf", "-INF", "nan",
                 "true", "False", "TRUE", "null", "NULL", "abc", "a.b", "1.2.3", "007", "1__0", "x1", "'1'", '"true"',
                 "../a/b.jpg", "/abs/p-q_r.onnx", "a:b", "50%", "[1,2,3]", "[a, b]", "[]", "[0.5,1e-1,null]"]:
        expected = parser.parse_override(f"k={text}").value()
        try:
            found = compose.value(text)
        except compose.NotSimple:
            continue  # left to Hydra: nothing to compare
        assert (type(found), found) == (type(expected), expected) or \
            (isinstance(found, float) and found != found and expected != expected), text


def test_a_run_is_composed_without_importing_hydra(tmp_path):
    code = ("import sys, runner.config as c; c.compose_run(sys.argv[1:]); "
            "print(sorted(m for m in sys.modules if m == 'hydra' or m.startswith('hydra.')))")
    done = subprocess.run([sys.executable, "-c", code, "recipe=wholebody", "input=x",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')) == []


def test_a_changed_recipe_or_schema_default_is_seen_by_the_next_run(tmp_path):
    """Nothing is kept between runs: the files and the code of the checkout
    decide (a copy of it, edited as a `git pull` would: a recipe and a schema default)."""
    import shutil
    for part in ("runner", "conf", "recipes"):
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True)
    code = ("import sys, runner, runner.config as c; assert runner.__file__.startswith(sys.argv[1]); "
            "cfg = c.compose_run(sys.argv[2:]); print(list(cfg.recipe.steps), cfg.detect.bbox_thr)")
    args = [sys.executable, "-c", code, str(tmp_path), "recipe=body_rtmpose", "input=x",
            f"hydra.run.dir={tmp_path / 'run'}", f"cache.dir={tmp_path / 'cache'}"]
    before = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert before.stdout.split() == ["['download',", "'detect',", "'pose',", "'visualize',", "'export']", "0.3"], \
        before.stderr[-2000:]
    recipe, schema = tmp_path / "recipes" / "body_rtmpose.yaml", tmp_path / "runner" / "schema.py"
    recipe.write_text(recipe.read_text().replace("[download, detect, pose, visualize, export]",
                                                 "[download, detect, pose, export]"))
    schema.write_text(schema.read_text().replace('bbox_thr: float = key(0.3,', 'bbox_thr: float = key(0.42,'))
    after = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert after.stdout.split() == ["['download',", "'detect',", "'pose',", "'export']", "0.42"], \
        after.stderr[-2000:]


@pytest.mark.parametrize("key", ["cache.dir", "download.dir", "backend.dir"])
def test_an_empty_folder_key_is_refused(key, tmp_path):
    with pytest.raises(RunnerError, match=f"{key}= is empty"):
        config.compose_run(["recipe=body_rtmpose", "input=x", f"{key}=", f"hydra.run.dir={tmp_path / 'run'}"])


def test_an_interpolated_cache_folder_is_resolved_where_it_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    cfg = config.compose_run(["recipe=body_rtmpose", "input=x", "cache.dir=${oc.env:SCRATCH}/x",
                              f"hydra.run.dir={tmp_path / 'run'}"])
    assert cfg.cache.dir == str(tmp_path / "scratch" / "x")
    assert cfg.download.dir == str(tmp_path / "scratch" / "x" / "checkpoints")

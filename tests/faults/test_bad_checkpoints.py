"""Checkpoints that cannot be had or cannot be trusted: one line each, nothing
half-written kept as if whole, and a dropped download resumes on the next run."""
from __future__ import annotations

import hashlib
import json
import pickle
import shutil

import pytest

import runner
from cases import cli, fault_server, one_line  # noqa: F401  (fault_server is a fixture)
from conftest import COCO

IMAGE = sorted(COCO.glob("*.jpg"))[0]


def pose_only(tmp_path, checkpoint) -> list[str]:
    """A run that needs only the pose model's checkpoint."""
    return [f"input={IMAGE}", "detect/model=whole_image", "pose/model=rtmpose_t", f"pose.model.checkpoint={checkpoint}",
            f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]


def published(served_dir, data: bytes, stem: str = "model") -> str:
    """`data` on the server under an OpenMMLab-style name carrying its sha256 prefix."""
    name = f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (served_dir / name).write_bytes(data)
    return name


@pytest.mark.parametrize("path,expected", [
    ("missing-12345678.pth", "HTTP 404"),
    ("error/{real}", "HTTP 500 injected fault"),
])
def test_a_server_that_fails_is_one_line(make_checkpoint, fault_server, tmp_path, path, expected):
    real = make_checkpoint("rtmpose_t")[0].name
    line = one_line(cli(*pose_only(tmp_path, f"{fault_server}/{path.format(real=real)}")))
    assert expected in line and "download.mirror=FOLDER" in line


def test_a_dropped_download_is_one_line_and_the_next_run_resumes_it(make_checkpoint, fault_server, tmp_path):
    path, _ = make_checkpoint("rtmpose_t")
    line = one_line(cli(*pose_only(tmp_path, f"{fault_server}/cut/{path.name}")))
    assert "stopped after" in line and "re-run to resume it" in line
    part = tmp_path / "cache" / "checkpoints" / f"{path.name}.part"
    assert 0 < part.stat().st_size < path.stat().st_size  # kept for the resume, never taken for whole
    assert not (tmp_path / "cache" / "checkpoints" / path.name).exists()
    done = cli(*pose_only(tmp_path, f"{fault_server}/{path.name}"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "cache" / "checkpoints" / path.name).read_bytes() == path.read_bytes()
    assert not part.exists()


def test_a_file_whose_sha256_is_not_its_name_is_refused(fault_server, served_dir, tmp_path):
    (served_dir / "impostor-0badc0de.pth").write_bytes(b"not what the name says")
    line = one_line(cli(*pose_only(tmp_path, f"{fault_server}/impostor-0badc0de.pth")))
    assert "sha256 starts with" in line and "not 0badc0de" in line
    assert not list((tmp_path / "cache" / "checkpoints").glob("impostor*"))


class Boom:
    def __reduce__(self):
        import os
        return os.system, ("echo pwned",)


@pytest.mark.parametrize("content,expected", [
    (pickle.dumps({"state_dict": Boom()}, protocol=2), "needs 'posix.system', which is not on the allow-list"),
    (b"this is a text file, not weights\n", "truncated or not a PyTorch checkpoint"),
])
def test_untrustworthy_or_wrong_files_are_refused(fault_server, served_dir, tmp_path, content, expected):
    name = published(served_dir, content, stem=f"odd{len(content)}")
    done = cli(*pose_only(tmp_path, f"{fault_server}/{name}"))
    assert expected in one_line(done) and "pwned" not in done.stdout


def test_a_truncated_local_checkpoint_is_one_line(make_checkpoint, tmp_path):
    path, _ = make_checkpoint("rtmpose_t")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    line = one_line(cli(*pose_only(tmp_path, cut)))
    assert "cannot be loaded" in line and "truncated or not a PyTorch checkpoint" in line
    assert "pose.model.checkpoint" in line


def test_a_folder_given_as_a_checkpoint_is_named_a_folder(tmp_path):
    line = one_line(cli(*pose_only(tmp_path, tmp_path)))
    assert "is a folder: pass pose.model.checkpoint=PATH to the .pth file in it" in line


@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])  # the native engine (from an export), MMPose's own
def test_a_checkpoint_of_another_model_is_refused_before_any_image(make_checkpoint, tmp_path, backend):
    """RTMPose-t's weights given to RTMPose-m (the default body model) would load
    where their shapes fit and leave the rest as initialised: wrong keypoints, status ok."""
    small = make_checkpoint("rtmpose_t")[0]
    out = tmp_path / "run"
    done = cli(f"input={IMAGE}", "detect/model=whole_image", f"pose.model.checkpoint={small}", f"backend={backend}",
               f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={out}")
    line = one_line(done)
    assert f"pose.model.checkpoint={small} does not fit pose/model=rtmpose_m" in line
    assert "backbone.stem.0.conv.weight is [12, 3, 3, 3] in the checkpoint but [24, 3, 3, 3] in the model" in line
    assert "pass pose/model=rtmpose_t (the model it fits), or the checkpoint of rtmpose_m" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "error" and manifest["stages"]["detect"]["units"] == 0  # no image was read
    assert not (out / "predictions").exists() and not (out / "overlays").exists()
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # no export made from it


def test_a_detector_checkpoint_of_another_model_is_refused(make_checkpoint, tmp_path):
    nano = make_checkpoint("rtmdet_nano_person")[0]
    line = one_line(cli(f"input={IMAGE}", "detect/model=rtmdet_m_person", f"detect.model.checkpoint={nano}",
                        "pose/model=rtmpose_t", f"pose.model.checkpoint={make_checkpoint('rtmpose_t')[0]}",
                        f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"))
    assert f"detect.model.checkpoint={nano} does not fit detect/model=rtmdet_m_person" in line
    assert "in the checkpoint but [" in line and "pass detect/model=rtmdet_nano_person (the model it fits)" in line


def test_an_export_is_never_made_from_a_checkpoint_of_another_model(make_checkpoint, tmp_path):
    from runner.backends.files import ExportSpec
    from runner.errors import RunnerError
    from runner.models.loading import make_export
    from runner.models.registry import load_entry
    small = make_checkpoint("rtmpose_t")[0]
    medium = load_entry("rtmpose_m")
    spec = ExportSpec.of(str(small), hashlib.sha256(small.read_bytes()).hexdigest(), str(medium.config), "mmpose",
                         medium.input_size, str(tmp_path / "onnx"))
    with pytest.raises(RunnerError, match="does not fit the model of .*rtmpose-m.*: backbone.stem.0.conv.weight is"):
        make_export(spec, spec.path)
    assert not spec.path.exists()


def test_a_checkpoint_that_fits_is_checked_once_per_cache(make_checkpoint, tmp_path):
    """The verdict is kept in the cache's memo: a later run of the same
    checkpoint and config builds no model to check it."""
    from runner.models import fit
    small = make_checkpoint("rtmpose_t")[0]
    args = dict(recipe="body_rtmpose", input=IMAGE, overrides=["detect/model=whole_image", "pose/model=rtmpose_t",
                                                                 f"pose.model.checkpoint={small}",
                                                                 f"cache.dir={tmp_path / 'cache'}"])
    runner.run(**args, output_dir=tmp_path / "a")
    assert len(list((tmp_path / "cache" / "memo" / "fits").glob("*.json"))) == 1
    fit._checked.cache_clear()  # as in a new process
    runner.run(**args, output_dir=tmp_path / "b")
    assert fit._checked.cache_info().misses == 0


def test_a_fits_verdict_counts_only_for_its_own_checkpoint_and_config(make_checkpoint, tmp_path):
    """A memo copied to another verdict's name (a restored backup, a copy tool)
    says nothing: the checkpoint of another model is still refused."""
    from runner.models import fit
    from runner.models.registry import load_entry
    small = make_checkpoint("rtmpose_t")[0]
    runner.run(recipe="body_rtmpose", input=IMAGE, output_dir=tmp_path / "fits", overrides=[
        "detect/model=whole_image", "pose/model=rtmpose_t", f"pose.model.checkpoint={small}",
        f"cache.dir={tmp_path / 'cache'}"])
    (made,) = (tmp_path / "cache" / "memo" / "fits").glob("*.json")
    other = fit.memo_key(hashlib.sha256(small.read_bytes()).hexdigest(), str(load_entry("rtmpose_m").config), "mmpose")
    shutil.copyfile(made, made.with_name(f"{other}.json"))  # "rtmpose-t's weights fit RTMPose-m"
    line = one_line(cli(f"input={IMAGE}", "detect/model=whole_image", f"pose.model.checkpoint={small}",
                        f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"))
    assert f"pose.model.checkpoint={small} does not fit pose/model=rtmpose_m" in line

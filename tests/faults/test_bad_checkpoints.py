"""Checkpoints that cannot be had or cannot be trusted: one line each, nothing
half-written kept as if whole, and a dropped download resumes on the next run."""
from __future__ import annotations

import hashlib
import pickle

import pytest

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

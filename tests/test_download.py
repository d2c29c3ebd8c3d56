"""Checkpoint resolution: URL (a local HTTP server), cache, mirror, local path,
hash-suffix checks, resumed and failed downloads."""
from __future__ import annotations

import hashlib
import shutil
import socket

import pytest

from runner.checkpoints.download import CheckpointResolver, ChecksumMismatch, expected_hash_prefix
from runner.errors import RunnerError


@pytest.mark.parametrize("name,prefix", [
    ("rtmpose-m_simcc-body7_pt-body7_420e-256x192-e48f03d0_20230504.pth", "e48f03d0"),
    ("rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth", "235e8209"),
    ("rtmpose-m_simcc-hand5_pt-aic-coco_210e-256x256-74fb594_20230320.pth", "74fb594"),
    ("yolo-x_8xb8-300e_coco-face_13274d7c.pth", "13274d7c"),
    ("rtmw-dw-l-m_simcc-cocktail14_270e-256x192-20231122.pth", None),  # a date, not a hash
    ("my_model.pth", None),
])
def test_hash_suffix_of_openmmlab_names(name, prefix):
    assert expected_hash_prefix(name) == prefix


def publish(served_dir, name: str, payload: bytes) -> str:
    """Put a file on the local server under `name` with its hash suffix filled in."""
    digest = hashlib.sha256(payload).hexdigest()
    final = name.replace("HASH", digest[:8])
    (served_dir / final).write_bytes(payload)
    return final


def test_downloads_verifies_and_then_uses_the_cache(tmp_path, served_dir, server):
    name = publish(served_dir, "model-HASH_20240101.pth", b"weights" * 1000)
    resolver = CheckpointResolver(tmp_path / "ckpt")
    first = resolver.resolve(f"{server}/{name}", owner="pose.model.checkpoint")
    assert first.origin == "download" and first.path == tmp_path / "ckpt" / name
    assert first.sha256 == hashlib.sha256(b"weights" * 1000).hexdigest()
    (served_dir / name).unlink()  # the server loses it: the cache still has it
    again = CheckpointResolver(tmp_path / "ckpt").resolve(f"{server}/{name}", owner="pose.model.checkpoint")
    assert again.origin == "cache" and again.sha256 == first.sha256
    assert not list((tmp_path / "ckpt").glob("*.part"))


def test_download_whose_hash_does_not_match_its_name_is_refused(tmp_path, served_dir, server):
    (served_dir / "bad-0badc0de.pth").write_bytes(b"not what the name says")
    with pytest.raises(ChecksumMismatch, match="0badc0de"):
        CheckpointResolver(tmp_path / "ckpt").resolve(f"{server}/bad-0badc0de.pth", owner="pose.model.checkpoint")
    assert not (tmp_path / "ckpt" / "bad-0badc0de.pth").exists()
    assert not (tmp_path / "ckpt" / "bad-0badc0de.pth.part").exists()


def test_corrupted_cached_file_is_fetched_again(tmp_path, served_dir, server):
    name = publish(served_dir, "again-HASH.pth", b"good" * 100)
    resolver = CheckpointResolver(tmp_path / "ckpt")
    resolver.resolve(f"{server}/{name}", owner="pose.model.checkpoint")
    (tmp_path / "ckpt" / name).write_bytes(b"bitrot")
    found = CheckpointResolver(tmp_path / "ckpt").resolve(f"{server}/{name}", owner="pose.model.checkpoint")
    assert found.origin == "download" and found.path.read_bytes() == b"good" * 100


def test_interrupted_download_resumes_from_its_part_file(tmp_path, served_dir, server):
    payload = bytes(range(256)) * 4000
    name = publish(served_dir, "big-HASH.pth", payload)
    part = tmp_path / "ckpt" / f"{name}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[:300_000])  # what an interrupted download left
    found = CheckpointResolver(tmp_path / "ckpt").resolve(f"{server}/{name}", owner="pose.model.checkpoint")
    assert found.path.read_bytes() == payload and not part.exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_gives_one_line_naming_url_file_and_mirror(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/rtmpose-x-deadbeef.pth"
    with pytest.raises(RunnerError) as err:
        CheckpointResolver(tmp_path / "ckpt", timeout_s=2).resolve(url, owner="pose.model.checkpoint")
    message = str(err.value)
    assert "\n" not in message
    for part in (url, "rtmpose-x-deadbeef.pth", "download.mirror=", "pose.model.checkpoint="):
        assert part in message


def test_missing_file_on_server_is_an_http_error_line(tmp_path, server):
    with pytest.raises(RunnerError, match="HTTP 404"):
        CheckpointResolver(tmp_path / "ckpt").resolve(f"{server}/nope-12345678.pth", owner="detect.model.checkpoint")


def test_mirror_is_used_by_official_file_name(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    payload = b"mirrored weights"
    name = f"rtmpose-m_simcc-body7-{hashlib.sha256(payload).hexdigest()[:8]}_20230504.pth"
    (mirror / name).write_bytes(payload)
    url = f"http://127.0.0.1:{free_port()}/path/{name}"  # unreachable on purpose
    found = CheckpointResolver(tmp_path / "ckpt", mirror=mirror).resolve(url, owner="pose.model.checkpoint")
    assert found.origin == "mirror" and found.path.parent == tmp_path / "ckpt"
    assert found.path.read_bytes() == payload


def test_mirror_must_be_a_folder(tmp_path):
    with pytest.raises(RunnerError, match="download.mirror"):
        CheckpointResolver(tmp_path / "ckpt", mirror=tmp_path / "missing")


def test_local_path_is_verified_against_its_name(tmp_path):
    good = tmp_path / f"mine-{hashlib.sha256(b'x').hexdigest()[:8]}.pth"
    good.write_bytes(b"x")
    assert CheckpointResolver(tmp_path / "ckpt").resolve(str(good), owner="pose.model.checkpoint").origin == "local"
    bad = tmp_path / "mine-00000000.pth"
    shutil.copy(good, bad)
    with pytest.raises(ChecksumMismatch):
        CheckpointResolver(tmp_path / "ckpt").resolve(str(bad), owner="pose.model.checkpoint")
    with pytest.raises(RunnerError, match="pose.model.checkpoint=PATH_OR_URL"):
        CheckpointResolver(tmp_path / "ckpt").resolve(str(tmp_path / "absent.pth"), owner="pose.model.checkpoint")


def test_dry_resolution_never_downloads(tmp_path, served_dir, server):
    name = publish(served_dir, "dry-HASH.pth", b"abc")
    resolver = CheckpointResolver(tmp_path / "ckpt")
    assert resolver.resolve(f"{server}/{name}", owner="pose.model.checkpoint", fetch=False) is None
    assert not (tmp_path / "ckpt" / name).exists()


def test_two_urls_with_one_file_name_are_two_checkpoints(tmp_path, served_dir, server):
    """`best.pth` of one training run is not `best.pth` of another: a name that
    carries no sha256 prefix is kept per URL, so the second URL is downloaded
    (and its sha256 is the one recorded), never served as the first."""
    for run, payload in (("run1", b"weights of run 1"), ("run2", b"weights of run 2, other")):
        (served_dir / run).mkdir(exist_ok=True)
        (served_dir / run / "best.pth").write_bytes(payload)
    resolver = CheckpointResolver(tmp_path / "ckpt")
    one = resolver.resolve(f"{server}/run1/best.pth", owner="pose.model.checkpoint")
    two = resolver.resolve(f"{server}/run2/best.pth", owner="pose.model.checkpoint")
    assert two.origin == "download" and two.path != one.path
    assert (one.sha256, two.sha256) == (hashlib.sha256(b"weights of run 1").hexdigest(),
                                        hashlib.sha256(b"weights of run 2, other").hexdigest())
    assert resolver.resolve(f"{server}/run1/best.pth", owner="pose.model.checkpoint").sha256 == one.sha256


def test_a_pinned_sha256_is_checked_for_a_download_the_cache_and_the_mirror(tmp_path, served_dir, server):
    """A model entry's `sha256:` (MediaPipe's files carry no hash in their names)."""
    payload = b"official model" * 100
    (served_dir / "official_model.tflite").write_bytes(payload)
    url, pin = f"{server}/official_model.tflite", hashlib.sha256(payload).hexdigest()
    resolve = CheckpointResolver(tmp_path / "ckpt").resolve
    assert resolve(url, owner="pose.model.path", sha256=pin).sha256 == pin
    (tmp_path / "ckpt" / CheckpointResolver.cached_name(url)).write_bytes(b"altered in the cache")
    assert resolve(url, owner="pose.model.path", sha256=pin).origin == "download"  # fetched again
    other = "0" * 64
    with pytest.raises(ChecksumMismatch) as err:  # the server's file is not the pinned one
        CheckpointResolver(tmp_path / "elsewhere").resolve(url, owner="pose.model.path", sha256=other,
                                                           pinned_by="pose.model.sha256")
    assert "\n" not in str(err.value) and "pose.model.sha256" in str(err.value) and "pose.model.path=" in str(err.value)
    kept = [p for p in (tmp_path / "elsewhere").rglob("official_model.tflite*") if ".locks" not in p.parts]
    assert not kept  # nothing half-trusted is kept
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "official_model.tflite").write_bytes(b"a mirrored copy that is not it")
    with pytest.raises(ChecksumMismatch, match="pose.model.sha256"):
        CheckpointResolver(tmp_path / "third", mirror=mirror).resolve(url, owner="pose.model.path", sha256=pin,
                                                                      pinned_by="pose.model.sha256")
    local = tmp_path / "mine.tflite"  # a file given by path is the user's own: no pin applies
    local.write_bytes(b"my own model")
    assert resolve(str(local), owner="pose.model.path", sha256=pin).origin == "local"

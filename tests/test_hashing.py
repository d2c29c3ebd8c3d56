"""runner.hashing.digest: the one function cache keys are made with. Only
values with canonical bytes are accepted, so a key is the same in every
process that sees the same data."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from runner.hashing import digest


def test_equal_data_gives_equal_digests_whatever_the_dict_order():
    a = {"kpt_thr": 0.3, "poses": [{"keypoints": np.arange(4, dtype=np.float32).reshape(2, 2)}], 7: None}
    b = {7: None, "poses": [{"keypoints": np.arange(4, dtype=np.float32).reshape(2, 2)}], "kpt_thr": 0.3}
    assert digest(a) == digest(b)


@pytest.mark.parametrize("x,y", [
    ([1, 2], [12]), ("a", b"a"), (1, 1.0), (1, True), (0, None), ("ab", ["a", "b"]),
    (np.zeros(2, np.float32), np.zeros(2, np.float64)), (np.zeros((2, 1)), np.zeros((1, 2))),
    ({"a": 1}, [("a", 1)]), (0.1, np.float32(0.1)),
])
def test_different_data_gives_different_digests(x, y):
    assert digest(x) != digest(y)


@pytest.mark.parametrize("value", [
    np.array([{"right": True}], dtype=object),  # what an object array's bytes hold: addresses
    {"hand_present": np.array([object()])},
    object(), {1, 2}, {(1, 2): 3}, np.array(["a"]),
])
def test_values_without_canonical_bytes_are_refused(value):
    with pytest.raises(TypeError, match="cannot make a key"):
        digest(value)


def test_the_same_value_has_the_same_digest_in_another_process():
    code = ("import numpy as np; from runner.hashing import digest; from runner.models.configs import config_identity;"
            "print(digest({'hand_present': {'right': True}, 'x': np.ones(3, np.float32)}),"
            " config_identity('mmpose::body_2d_keypoint/rtmo/body7/rtmo-s_8xb32-600e_body7-640x640.py'))")
    runs = {subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout for _ in range(2)}
    assert len(runs) == 1 and len(runs.pop().split()) == 2


def test_a_file_rewritten_in_place_with_its_mtime_set_back_is_hashed_anew(tmp_path):
    """The stat memo must not trust a stamp a user can set: same size, same
    inode, mtime restored with os.utime (as `touch -r` or a copy tool does)."""
    import os
    from runner.hashing import MEMO_MIN_BYTES, FileHasher, sha256_file
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"a" * MEMO_MIN_BYTES)
    before = os.stat(path)
    first = FileHasher(tmp_path / "memo").sha256(path)
    with open(path, "r+b") as f:  # in place: the inode stays
        f.write(b"b")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    for hasher in (FileHasher(tmp_path / "memo"), FileHasher(tmp_path / "memo")):  # the memo on disk, then again
        assert hasher.sha256(path) == sha256_file(path) != first

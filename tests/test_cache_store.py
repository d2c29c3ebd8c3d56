"""The stage cache on its own: atomic entries, checksums, explanations, locks, gc."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from runner.cache import EntryKey, Store
from runner.cache.__main__ import gc, info, parse_age, parse_size


def key(**changes) -> EntryKey:
    parts = dict(stage="pose", input="ab" * 32, model="m1", params="p1", code="c1")
    parts.update(changes)
    return EntryKey(**parts)


def test_round_trip_keeps_dtypes_and_empty_arrays(tmp_path):
    store = Store(tmp_path)
    arrays = {"keypoints": np.arange(34, dtype=np.float32).reshape(17, 2),
              "boxes": np.zeros((0, 4), np.float32), "labels": np.array([3, 1], np.int64)}
    store.put(key(), arrays, label="rtmpose_t")
    got = store.get(key())
    assert got.keys() == arrays.keys()
    for name in arrays:
        assert got[name].dtype == arrays[name].dtype
        np.testing.assert_array_equal(got[name], arrays[name])


def test_every_key_component_changes_the_entry(tmp_path):
    store = Store(tmp_path)
    store.put(key(), {"x": np.ones(1)})
    for change in ({"input": "cd" * 32}, {"model": "m2"}, {"params": "p2"}, {"code": "c2"}, {"stage": "detect"}):
        assert store.get(key(**change)) is None


def test_entries_are_not_pickles(tmp_path):
    store = Store(tmp_path)
    store.put(key(), {"x": np.ones(3)})
    data = store.path(key()).read_bytes()
    header = json.loads(data[8: 8 + int.from_bytes(data[:8], "little")])
    assert header["x"]["dtype"] == "F64" and "__metadata__" in header  # safetensors


def test_miss_explanations(tmp_path):
    store = Store(tmp_path)
    assert store.explain_miss(key()) == "new input"
    files = {"checkpoint": "ck1", "model config": "cf1"}
    store.put(EntryKey.of("pose", "in", files, "p1", "c1"), {"x": np.ones(1)})
    moved = {**files, "checkpoint": "ck2"}
    assert store.explain_miss(EntryKey.of("pose", "in", moved, "p1", "c1")) == "changed checkpoint"
    assert store.explain_miss(EntryKey.of("pose", "in", files, "p2", "c1")) == "changed parameter"
    assert store.explain_miss(EntryKey.of("pose", "in", files, "p1", "c2")) == "changed code"
    assert store.explain_miss(EntryKey.of("pose", "in", {**moved, "model config": "cf2"}, "p1", "c2")) == \
        "changed checkpoint + changed model config + changed code"
    store.put(key(), {"x": np.ones(1)})
    assert store.explain_miss(key(model="m2")) == "changed file"  # a key made without its files named
    assert store.explain_miss(key(input="ef" * 32)) == "new input"


def test_damaged_entries_are_dropped(tmp_path, caplog):
    store = Store(tmp_path)
    store.put(key(), {"x": np.arange(100.0)})
    path = store.path(key())
    data = bytearray(path.read_bytes())
    data[-8] ^= 0x55
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        assert store.get(key()) is None
    assert "checksum mismatch" in caplog.text and not path.exists()


def test_a_failed_write_leaves_no_entry(tmp_path, monkeypatch):
    store = Store(tmp_path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("runner.cache.store.save_safetensors", crash)
    with pytest.raises(OSError):
        store.put(key(), {"x": np.ones(1)})
    assert store.get(key()) is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def _hold(root, seconds, ready):
    store = Store(root)
    with store.locked(key()):
        ready.set()
        time.sleep(seconds)
        store.put(key(), {"x": np.full(2, 7.0)})


def test_lock_makes_the_second_process_wait_and_reuse(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), 1.0, ready))
    holder.start()
    assert ready.wait(30)
    store = Store(tmp_path)
    assert store.get(key()) is None  # not written yet
    with store.locked(key()):
        got = store.get(key())
    holder.join()
    np.testing.assert_array_equal(got["x"], [7.0, 7.0])


def test_gc_by_size_and_age(tmp_path):
    store = Store(tmp_path / "stages")
    for i in range(5):
        k = key(input=f"{i:02d}" * 32)
        store.put(k, {"x": np.zeros(1000)})
        os.utime(store.path(k), (time.time() - (5 - i) * 86400,) * 2)  # i=0 oldest
    size = store.path(key(input="00" * 32)).stat().st_size
    removed, _ = gc(tmp_path, tmp_path / "onnx", max_size=3 * size, older_than=None)
    assert removed == 2
    assert store.get(key(input="00" * 32)) is None and store.get(key(input="04" * 32)) is not None
    removed, _ = gc(tmp_path, tmp_path / "onnx", max_size=None, older_than=parse_age("1.5d"))
    assert removed == 2  # the 3- and 2-day-old ones; a hit refreshed nothing else


def test_sizes_and_ages_parse():
    assert parse_size("500M") == 500 << 20 and parse_size("2G") == 2 << 30
    assert parse_age("12h") == 43200 and parse_age("2w") == 14 * 86400


def test_cache_cli_info_and_clear(tmp_path):
    store = Store(tmp_path / "stages")
    store.put(key(), {"x": np.ones(10)}, label="rtmpose_t")
    text = info(tmp_path, tmp_path / "onnx")
    assert "pose" in text and "rtmpose_t" in text
    run = lambda *a: subprocess.run([sys.executable, "-m", "runner.cache", "--dir", str(tmp_path), *a],  # noqa: E731
                                    capture_output=True, text=True)
    assert "rtmpose_t" in run("info").stdout
    assert run("gc").returncode != 0  # needs a limit
    assert "cleared" in run("clear").stdout
    assert store.get(key()) is None


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_get_the_usual_mode(tmp_path, umask):
    """Files written atomically are readable by whoever the umask lets read
    them (a group sharing results), not 0600 as mkstemp makes them."""
    from runner import atomic
    old = os.umask(umask)
    try:
        atomic.write_json(tmp_path / "manifest.json", {"status": "ok"})
        Store(tmp_path / "stages").put(key(), {"x": np.ones(1)})
    finally:
        os.umask(old)
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert Store(tmp_path / "stages").path(key()).stat().st_mode & 0o777 == 0o666 & ~umask


def test_waiting_for_a_hung_holder_times_out_with_a_clear_message(tmp_path):
    from runner.atomic import LockTimeout
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path), 30.0, ready))  # "hung": holds it for 30 s
    holder.start()
    try:
        assert ready.wait(30)
        store = Store(tmp_path, lock_timeout_s=0.5)
        assert store.try_lock(key()) is None
        with pytest.raises(LockTimeout, match=r"waited 0.5 s for another process to finish the pose entry .*"
                                              r"raise cache.lock_timeout_s"):
            with store.locked(key()):
                pass
    finally:
        holder.kill()
        holder.join()
    with Store(tmp_path, lock_timeout_s=0.5).locked(key()):  # the OS released the dead holder's lock
        pass

"""Beyond one machine: sharded sweeps through Hydra's launchers (submitit's
local executor, a Ray cluster on 127.0.0.1) merge into exactly what one
unsharded run writes, each cache entry computed once; a re-run after adding a
file computes only it; a killed shard is named and a re-run completes the
merge; the lock for network filesystems keeps two processes to one computation."""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import COCO, ROOT


@pytest.fixture
def models(make_checkpoint, machine_dir):
    """RTMDet-nano + RTMPose-t from local files; exports and memos in the session's machine_dir."""
    det, pose = make_checkpoint("rtmdet_nano_person")[0], make_checkpoint("rtmpose_t")[0]
    return ["recipe=body_rtmpose", "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
            f"+download.checkpoints.rtmdet_nano_person={det}", f"+download.checkpoints.rtmpose_t={pose}",
            f"cache.machine_dir={machine_dir}"]


def runner_cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for d in ("predictions", "overlays") for p in
            sorted((folder / d).rglob("*")) if p.is_file()} | {"results_coco.json": (folder / "results_coco.json")
                                                                 .read_bytes()}


def computed(folder: Path, stage: str) -> int:
    return sum(json.loads((folder / str(i) / "manifest.json").read_text())["stages"][stage]["computed"] for i in (0, 1))


@pytest.fixture
def unsharded(models, tmp_path):
    """One plain run of the COCO four: what every merge must equal."""
    done = runner_cli(f"input={COCO}", *models, f"cache.dir={tmp_path / 'plain-cache'}",
                      f"hydra.run.dir={tmp_path / 'plain'}")
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    return tmp_path / "plain", manifest["stages"]


def test_submitit_local_shards_merge_into_the_unsharded_run(models, unsharded, tmp_path):
    plain, stages = unsharded
    sweep = tmp_path / "sweep"
    done = runner_cli("-m", "hydra/launcher=submitit_local", f"input={COCO}", *models, "shard.count=2",
                      "shard.index=0,1", f"cache.dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "merged 2 shards into" in done.stdout
    assert outputs(sweep / "merged") == outputs(plain)
    assert computed(sweep, "detect") == stages["detect"]["computed"] == 4  # each entry once
    assert computed(sweep, "pose") == stages["pose"]["computed"]
    merged = json.loads((sweep / "merged" / "manifest.json").read_text())
    assert merged["stages"]["detect"]["computed"] == merged["stages"]["pose"]["computed"] == 0
    assert [s["status"] for s in merged["merged_from"]] == ["ok", "ok"] and merged["incomplete_shards"] == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_cluster_on_this_machine_gives_the_same_merge(models, unsharded, tmp_path):
    plain, _ = unsharded
    ray = Path(sys.executable).parent / "ray"
    scratch = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    # token authentication, as Ray enables it by default wherever ~/.ray/auth_token exists
    # (a client given an explicit address only uses it when told: RAY_AUTH_MODE=token)
    token = scratch / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str(scratch), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port()
    started = subprocess.run([str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                              f"--temp-dir={scratch}"], capture_output=True, text=True, env={**os.environ, **env})
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        sweep = tmp_path / "sweep"
        done = runner_cli("-m", "hydra/launcher=ray_cluster", f"input={COCO}", *models, "shard.count=2",
                          "shard.index=0,1", f"cache.dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}",
                          env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"})
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert outputs(sweep / "merged") == outputs(plain)
        assert computed(sweep, "detect") == 4
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, env={**os.environ, **env})
        shutil.rmtree(scratch, ignore_errors=True)


def test_adding_an_image_recomputes_only_it(models, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(COCO.glob("*.jpg"))[:3]:
        shutil.copy(path, folder)
    args = ["-m", f"input={folder}", *models, "shard.count=2", "shard.index=0,1", f"cache.dir={tmp_path / 'cache'}"]
    first = runner_cli(*args, f"hydra.sweep.dir={tmp_path / 'first'}")
    assert first.returncode == 0, first.stderr[-2000:]
    shutil.copy(sorted(COCO.glob("*.jpg"))[3], folder)
    again = runner_cli(*args, f"hydra.sweep.dir={tmp_path / 'again'}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert computed(tmp_path / "again", "detect") == 1  # the new one, in whichever shard it falls
    shards = [json.loads((tmp_path / "first" / str(i) / "manifest.json").read_text())["input"]["items"] for i in (0, 1)]
    later = [json.loads((tmp_path / "again" / str(i) / "manifest.json").read_text())["input"]["items"] for i in (0, 1)]
    for before, after in zip(shards, later):  # nothing moved to another shard
        assert {i["id"] for i in before} <= {i["id"] for i in after}


def test_a_killed_shard_is_named_and_a_re_run_completes_the_merge(models, unsharded, tmp_path):
    plain, _ = unsharded
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    args = ["-m", f"input={COCO}", *models, "shard.count=2", "shard.index=0,1", "detect.batch_size=1",
            "pose.batch_size=1", f"cache.dir={cache}", f"hydra.sweep.dir={sweep}"]
    run = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (sweep / "1" / ".hydra" / "overrides.yaml").exists() and run.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)  # shard 0 finished; shard 1 has started
    run.send_signal(signal.SIGKILL)
    run.wait()
    left = sweep / "1" / "manifest.json"  # written `running` when the job starts; a killed job leaves it so
    assert not left.exists() or json.loads(left.read_text())["status"] == "running", "the kill came too late"
    merge = subprocess.run([sys.executable, "-m", "runner.merge", str(sweep)], cwd=ROOT, capture_output=True,
                           text=True)
    # died: its manifest still says `running` (or it wrote none); missing: killed before Hydra wrote its records
    assert merge.returncode == 1 and re.search(r"incomplete shards: 1 \((died|missing)\)", merge.stdout), \
        merge.stdout + merge.stderr
    manifest = json.loads((sweep / "merged" / "manifest.json").read_text())
    assert manifest["incomplete_shards"] == [1] and manifest["failed"]  # shard 1's items, said so
    assert all("not in the cache" in f["error"] for f in manifest["failed"])
    again = runner_cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert outputs(sweep / "merged") == outputs(plain)


def _hold_create_lock(path: str, ready, stale_s: float, beat_s: float) -> None:
    from runner import atomic
    atomic.set_lock_kind("create")
    atomic.CreateLock.STALE_S, atomic.CreateLock.HEARTBEAT_S = stale_s, beat_s
    atomic.lock(path).acquire(timeout=0)
    ready.set()
    time.sleep(600)


@contextlib.contextmanager
def create_lock_held(path: Path, stale_s: float, beat_s: float):
    """A create-lock held by another process (its heartbeat every `beat_s`),
    with this process's stale time `stale_s`; yields the holder (kill it to die)."""
    import multiprocessing
    from runner import atomic
    atomic.set_lock_kind("create")
    atomic.CreateLock.STALE_S = stale_s
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_create_lock, args=(str(path), ready, stale_s, beat_s))
    holder.start()
    try:
        assert ready.wait(30)
        yield holder
    finally:
        holder.kill()
        holder.join()
        atomic.set_lock_kind("auto")
        atomic.CreateLock.STALE_S = 30.0


def test_create_locks_break_when_their_holder_died(tmp_path):
    from runner import atomic
    with create_lock_held(tmp_path / "entry.lock", 1.0, 0.25) as holder:
        assert atomic.try_lock(tmp_path / "entry.lock") is None  # held, and kept fresh
        holder.kill()
        holder.join()
        with atomic.locked(tmp_path / "entry.lock", "a test entry", timeout_s=30):  # stale after ~1 s: broken
            assert (tmp_path / "entry.lock").exists()
        assert not (tmp_path / "entry.lock").exists()


def test_a_live_holders_heartbeat_keeps_its_lock_past_the_stale_time(tmp_path):
    from runner import atomic
    with create_lock_held(tmp_path / "entry.lock", 0.5, 0.1):
        held_by = (tmp_path / "entry.lock").read_text().split()[:3]
        with pytest.raises(atomic.LockTimeout):  # four stale times of waiting: never broken
            with atomic.locked(tmp_path / "entry.lock", "a test entry", timeout_s=2.0):
                pass
        assert (tmp_path / "entry.lock").read_text().split()[:3] == held_by


def test_a_slow_heartbeat_never_holds_up_taking_or_releasing_other_locks(tmp_path, monkeypatch):
    """A beat reads and rewrites its lock (on a bucket: two requests, which may be
    slow): taking and releasing other locks meanwhile goes on, and the lock being
    beaten is released only once its beat is over (never re-made after the release)."""
    import threading
    from runner import atomic
    atomic.set_lock_kind("create")
    slow, other = atomic.CreateLock(tmp_path / "slow.lock"), atomic.CreateLock(tmp_path / "other.lock")
    slow.acquire(timeout=0)
    inside, done, order = threading.Event(), threading.Event(), []
    real_read = slow._read

    def slow_read(path):
        inside.set()
        done.wait(60)  # as long as the other lock's round is under way (or a minute: then the order shows it)
        order.append("beat read")
        return real_read(path)

    monkeypatch.setattr(slow, "_read", slow_read)
    beating = threading.Thread(target=atomic.CreateLock.beat_all)
    beating.start()
    assert inside.wait(60)
    other.acquire(timeout=0)
    other.release()
    order.append("other taken and released")
    done.set()
    beating.join()
    monkeypatch.setattr(slow, "_read", real_read)
    slow.release()
    atomic.set_lock_kind("auto")
    assert order == ["other taken and released", "beat read"]
    assert not (tmp_path / "slow.lock").exists() and not (tmp_path / "other.lock").exists()


def test_a_stale_verdict_never_removes_the_lock_another_waiter_has_just_taken(tmp_path, monkeypatch):
    """Two waiters find a dead holder's lock stale. Just as the second is about to
    remove it, the first breaks it and takes the lock: the second must not remove
    that new lock (two holders), whatever its earlier verdict was."""
    from runner import atomic
    path = tmp_path / "entry.lock"
    path.write_text("a dead host 123 0\n")  # its holder died: nobody refreshes it
    atomic.set_lock_kind("create")
    atomic.CreateLock.STALE_S = 0.3
    first, second = atomic.CreateLock(path), atomic.CreateLock(path)
    taken = []
    real_unlink, real_rename = os.unlink, os.rename

    def first_waiter_takes_it():
        try:
            first.acquire(timeout=0.45)
            taken.append("first")
        except atomic.Timeout:
            pass

    armed = [True]

    def destroying(call):
        def wrapped(src, *args, **kwargs):
            if armed[0] and Path(src) == path:  # the second waiter, about to remove the lock it judged stale
                armed[0] = False
                first_waiter_takes_it()
            return call(src, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(os, "unlink", destroying(real_unlink))
    monkeypatch.setattr(os, "rename", destroying(real_rename))
    try:
        second.acquire(timeout=5)
        taken.append("second")
        assert taken == ["second"], "two holders: the second waiter removed the lock the first had just taken"
        assert path.read_text().startswith(second.token)
    finally:
        monkeypatch.undo()
        atomic.set_lock_kind("auto")
        atomic.CreateLock.STALE_S = 30.0

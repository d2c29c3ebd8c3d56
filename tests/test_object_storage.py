"""The cache and the inputs in an S3 bucket, against a real S3 implementation
on this machine: moto's server on 127.0.0.1 (the same requests AWS, MinIO or
Ceph answer), driven by the runner's own processes through its real client (obstore).

A run from the bucket writes exactly the local run's files and a re-run
computes nothing; shards in separate processes (separate run folders and
local caches, as on separate machines) sharing only the bucket merge into
exactly what one local run writes; and the faults: the server stopping
mid-run, throttling, a damaged object, credentials missing or refused, a
bucket that does not exist; never a credential in a line or a manifest."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import COCO, ROOT
from faults.cases import cli, one_line

SECRET = "pose-runner-test-" + secrets.token_hex(8)  # must never appear in what the runner writes or says


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 on 127.0.0.1 (its S3 app, served as its own server serves it), its buckets kept in this process while the server
    itself is stopped and started again (as a store's data outlives an outage).
    `wrap` puts a WSGI layer in front of it (a store that throttles)."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = None

    def start(self, wrap=None) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app
        from werkzeug.serving import make_server
        app = create_backend_app("s3")  # S3 alone: no guessing of the service from each request
        self.server = make_server("127.0.0.1", self.port, wrap(app) if wrap else app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def s3():
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def machine(tmp_path_factory) -> Path:
    """This machine's local folder (checkpoints, exports), shared by the session's runs."""
    return tmp_path_factory.mktemp("machine")


@pytest.fixture
def env(s3, machine):
    """The runs' environment: the endpoint, test credentials, this machine's local folder."""
    return {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": "pose-runner-test",
            "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "2",
            "AWS_EC2_METADATA_DISABLED": "true", "POSE_RUNNER_CACHE": str(machine)}


@pytest.fixture
def client(s3):
    import boto3
    return boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id="pose-runner-test",
                        aws_secret_access_key=SECRET, region_name="us-east-1")


@pytest.fixture
def bucket(client) -> str:
    """A new bucket holding the COCO images under coco/."""
    name = "poses-" + secrets.token_hex(4)
    client.create_bucket(Bucket=name)
    for path in sorted(COCO.glob("*.jpg")):
        client.upload_file(str(path), name, f"coco/{path.name}")
    return name


@pytest.fixture(scope="session")
def body(make_checkpoint):
    """RTMDet-nano + RTMPose-t from local files."""
    det, pose = make_checkpoint("rtmdet_nano_person")[0], make_checkpoint("rtmpose_t")[0]
    return ["recipe=body_rtmpose", "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
            f"+download.checkpoints.rtmdet_nano_person={det}", f"+download.checkpoints.rtmpose_t={pose}"]


@pytest.fixture(scope="session")
def local_run(body, tmp_path_factory):
    """One run with everything in local folders: what every bucket run must equal."""
    where = tmp_path_factory.mktemp("local")
    done = cli(f"input={COCO}", *body, f"cache.dir={where / 'cache'}", f"hydra.run.dir={where / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    return where / "run"


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for d in ("predictions", "overlays") for p in
            sorted((folder / d).rglob("*")) if p.is_file()} | {"results_coco.json": (folder / "results_coco.json")
                                                                 .read_bytes()}


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def computed(folder: Path) -> dict[str, int]:
    return {s: manifest(folder)["stages"][s]["computed"] for s in ("detect", "pose")}


def said(done, folder: Path | None = None) -> str:
    """Everything a run said and wrote (to look for credentials in)."""
    text = done.stdout + done.stderr
    if folder is not None and folder.is_dir():
        text += "".join(p.read_text(errors="replace") for p in folder.rglob("*.json"))
    return text


def test_a_run_on_the_bucket_writes_the_local_runs_files_and_a_re_run_computes_nothing(body, bucket, env, local_run,
                                                                                      tmp_path):
    cache = f"cache.dir=s3://{bucket}/cache"
    first = cli(f"input=s3://{bucket}/coco/", *body, cache, f"hydra.run.dir={tmp_path / 'first'}", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert outputs(tmp_path / "first") == outputs(local_run)
    assert computed(tmp_path / "first") == computed(local_run)
    assert SECRET not in said(first, tmp_path / "first")
    items = manifest(tmp_path / "first")["input"]
    assert items["path"] == f"s3://{bucket}/coco/" and [i["sha256"] for i in items["items"]] == \
        [i["sha256"] for i in manifest(local_run)["input"]["items"]]
    again = cli(f"input=s3://{bucket}/coco/", *body, cache, f"hydra.run.dir={tmp_path / 'again'}", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert computed(tmp_path / "again") == {"detect": 0, "pose": 0}
    assert outputs(tmp_path / "again") == outputs(local_run)
    # a local copy of the images is the same content: the same entries
    local_copy = cli(f"input={COCO}", *body, cache, f"hydra.run.dir={tmp_path / 'copy'}", env=env)
    assert local_copy.returncode == 0, local_copy.stderr[-2000:]
    assert computed(tmp_path / "copy") == {"detect": 0, "pose": 0}


def test_a_video_in_the_bucket_gives_the_local_videos_files_and_shares_its_entries(body, bucket, env, client,
                                                                                  tmp_path):
    video = COCO.parent / "video" / "demo.mp4"
    client.upload_file(str(video), bucket, "clips/demo.mp4")
    args = [*body, "max_frames=6", "track.enabled=true", f"cache.dir=s3://{bucket}/cache"]
    local = cli(f"input={video}", *args, f"hydra.run.dir={tmp_path / 'local'}", env=env)
    assert local.returncode == 0, local.stderr[-2000:]
    remote = cli(f"input=s3://{bucket}/clips/demo.mp4", *args, f"hydra.run.dir={tmp_path / 'remote'}", env=env)
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert computed(tmp_path / "remote") == {"detect": 0, "pose": 0}  # the same frames: the local run's entries
    assert outputs(tmp_path / "remote") == outputs(tmp_path / "local") and outputs(tmp_path / "local")
    assert manifest(tmp_path / "remote")["input"]["items"][0]["sha256"] == \
        manifest(tmp_path / "local")["input"]["sha256"]


def test_two_shards_sharing_only_the_bucket_merge_into_the_local_run(body, bucket, env, local_run, tmp_path):
    """Each shard a process with its own run folder and its own local folder
    (checkpoints, exports), as on two machines; the merge on a third."""
    run = [f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache", "shard.count=2"]
    for index in (0, 1):
        machine = {**env, "POSE_RUNNER_CACHE": str(tmp_path / f"machine{index}")}
        done = cli(*run, f"shard.index={index}", f"hydra.run.dir={tmp_path / f'shard{index}'}", env=machine)
        assert done.returncode == 0, done.stderr[-2000:]
    shards = [computed(tmp_path / f"shard{i}") for i in (0, 1)]
    assert sum(s["detect"] for s in shards) == 4 and sum(s["pose"] for s in shards) == computed(local_run)["pose"]
    merge = cli_merge("--out", tmp_path / "merged", *run, env={**env, "POSE_RUNNER_CACHE": str(tmp_path / "m")})
    assert merge.returncode == 0, merge.stdout + merge.stderr[-2000:]
    assert outputs(tmp_path / "merged") == outputs(local_run)
    merged = manifest(tmp_path / "merged")
    assert merged["incomplete_shards"] == [] and computed(tmp_path / "merged") == {"detect": 0, "pose": 0}
    assert all(s["manifest"].startswith(f"s3://{bucket}/cache/shards/") for s in merged["merged_from"])


def test_a_joblib_sweep_with_no_shared_cache_folder_merges_into_the_local_run(body, bucket, env, local_run, tmp_path):
    sweep = tmp_path / "sweep"
    done = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"input=s3://{bucket}/coco/", *body,
               f"cache.dir=s3://{bucket}/cache", "shard.count=2", "shard.index=0,1", f"hydra.sweep.dir={sweep}",
               env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "merged 2 shards into" in done.stdout
    assert outputs(sweep / "merged") == outputs(local_run)
    assert sum(computed(sweep / str(i))["detect"] for i in (0, 1)) == 4


def test_two_processes_wanting_the_same_entries_compute_each_once(body, bucket, env, local_run, tmp_path):
    """The same run twice at once on one bucket cache: the lease locks (conditional
    writes) give each entry to one of them; the other waits and reads it."""
    args = [f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache", "detect.batch_size=1",
            "pose.batch_size=1"]
    runs = [subprocess.Popen([sys.executable, "-m", "runner", *args, f"hydra.run.dir={tmp_path / str(i)}"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
            for i in (0, 1)]
    for run in runs:
        assert run.wait() == 0, run.stderr.read()[-2000:]
    both = [computed(tmp_path / str(i)) for i in (0, 1)]
    assert sum(c["detect"] for c in both) == 4 and sum(c["pose"] for c in both) == computed(local_run)["pose"]
    assert outputs(tmp_path / "0") == outputs(tmp_path / "1") == outputs(local_run)


def test_an_unfinished_shard_is_named_by_the_merge(body, bucket, env, tmp_path):
    run = [f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache", "shard.count=2"]
    done = cli(*run, "shard.index=0", f"hydra.run.dir={tmp_path / 'shard0'}", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    merge = cli_merge("--out", tmp_path / "merged", *run, env=env)
    assert merge.returncode == 1 and "incomplete shards: 1 (missing)" in merge.stdout, merge.stdout + merge.stderr
    failed = manifest(tmp_path / "merged")["failed"]
    assert failed and all("not in the cache" in f["error"] for f in failed)


def cli_merge(*args, env):
    return subprocess.run([sys.executable, "-m", "runner.merge", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env})


# -- faults ----------------------------------------------------------------------


def test_the_server_stopping_mid_run_is_one_line_and_the_same_command_resumes(body, bucket, env, client, s3,
                                                                            local_run, tmp_path):
    args = [f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache", "detect.batch_size=1",
            "pose.batch_size=1", f"hydra.run.dir={tmp_path / 'cut'}"]
    run = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    while run.poll() is None and not entries(client, bucket, "pose"):
        time.sleep(0.02)  # the first pose entries are in the bucket
    s3.stop()
    try:
        out, err = run.communicate()
    finally:
        s3.start()
    assert run.returncode != 0, "the run finished before the server stopped"
    line = one_line(subprocess.CompletedProcess(args, run.returncode, out, err))
    assert line.startswith("error: cannot reach the object store at " + s3.endpoint) and "run the same command" in line
    kept = entries(client, bucket, "pose")
    assert kept and manifest(tmp_path / "cut")["status"] == "error"
    again = cli(*args, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert computed(tmp_path / "cut")["pose"] <= computed(local_run)["pose"] - len(kept)
    assert outputs(tmp_path / "cut") == outputs(local_run)


def test_an_interrupted_run_leaves_every_entry_it_computed_in_the_bucket_and_no_lease(body, bucket, env, client,
                                                                                     tmp_path):
    """Entries are written while the next batch computes, and the next batch is
    claimed (leased) ahead: stopped (SIGTERM, as Ctrl-C), a run waits for its
    write behind and lets go of its claim, so nothing it computed is lost and
    the next run does not wait for a lease."""
    args = [f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache", "detect.batch_size=1",
            "pose.batch_size=1", f"hydra.run.dir={tmp_path / 'cut'}"]
    run = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    while run.poll() is None and len(entries(client, bucket, "pose")) < 2:
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    run.communicate()
    assert run.returncode == 1, "the run finished before it was stopped"
    stopped = manifest(tmp_path / "cut")
    assert stopped["status"] == "interrupted"
    assert len(entries(client, bucket, "pose")) == stopped["stages"]["pose"]["computed"] >= 2
    assert not client.list_objects_v2(Bucket=bucket, Prefix="cache/stages/.locks/").get("Contents")


def entries(client, bucket: str, stage: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"cache/stages/{stage}/").get("Contents", [])
    return [o["Key"] for o in listed]


class Throttling:
    """A WSGI layer: 503 SlowDown to one request in `every` (to all of them
    with every=1), as a store under load answers. A retry is a request of its
    own, so with every > 1 each request gets through within two attempts."""

    def __init__(self, app, every: int):
        self.app, self.every, self.count = app, every, 0
        self.counting = threading.Lock()

    def __call__(self, environ, start_response):
        with self.counting:
            self.count += 1
            refuse = self.count % self.every == 0
        if refuse:
            start_response("503 Slow Down", [("Content-Type", "application/xml")])
            return [b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"]
        return self.app(environ, start_response)


@pytest.fixture
def throttled(s3):
    """start(every): the bucket behind a throttling endpoint of its own; yields that endpoint's URL."""
    servers = []

    def start(every: int) -> str:
        server = S3Server()
        server.start(lambda app: Throttling(app, every))
        servers.append(server)
        return server.endpoint
    yield start
    for server in servers:
        server.stop()


def test_throttled_answers_are_retried_with_back_off(body, bucket, env, throttled, local_run, tmp_path):
    endpoint = throttled(every=8)
    done = cli(f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache",
               f"hydra.run.dir={tmp_path / 'slow'}", env={**env, "AWS_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "5"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert outputs(tmp_path / "slow") == outputs(local_run)


def test_a_store_that_keeps_throttling_is_one_line_after_bounded_attempts(body, bucket, env, throttled, tmp_path):
    endpoint = throttled(every=1)
    done = cli(f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache",
               f"hydra.run.dir={tmp_path / 'busy'}", env={**env, "AWS_ENDPOINT_URL": endpoint})
    line = one_line(done)
    assert f"s3://{bucket} at {endpoint} kept throttling requests" in line and "after 2 attempts" in line


def test_an_object_damaged_in_the_bucket_is_recomputed_with_a_warning(body, bucket, env, client, tmp_path):
    args = [f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache"]
    first = cli(*args, f"hydra.run.dir={tmp_path / 'first'}", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    damaged = entries(client, bucket, "detect")[0]
    data = client.get_object(Bucket=bucket, Key=damaged)["Body"].read()
    client.put_object(Bucket=bucket, Key=damaged, Body=data[:-8] + bytes(8))  # the arrays' last bytes zeroed
    again = cli(*args, f"hydra.run.dir={tmp_path / 'again'}", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"cache entry s3://{bucket}/{damaged} is damaged (checksum mismatch): recomputing it" in again.stdout
    assert computed(tmp_path / "again")["detect"] == 1
    assert outputs(tmp_path / "again") == outputs(tmp_path / "first")


def no_model_ran(folder: Path) -> bool:
    stages = manifest(folder)["stages"]
    return manifest(folder)["status"] == "error" and all(s["computed"] == 0 for s in stages.values())


def test_missing_credentials_are_one_line_before_any_model_runs(body, bucket, env, tmp_path):
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
    bare |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    done = cli(f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache",
               f"hydra.run.dir={tmp_path / 'run'}", env=bare)
    line = one_line(done)
    assert line.startswith(f"error: no credentials for s3://{bucket} at {env['AWS_ENDPOINT_URL']}")
    assert no_model_ran(tmp_path / "run")


@pytest.fixture
def auth_on():
    """The server checks credentials (moto: after this many unchecked requests, none)."""
    from moto import settings
    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    yield
    settings.INITIAL_NO_AUTH_ACTION_COUNT = before


def test_refused_credentials_are_one_line_and_never_shown(body, bucket, env, auth_on, tmp_path):
    done = cli(f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache",
               f"hydra.run.dir={tmp_path / 'run'}", env=env)
    line = one_line(done)
    assert f"s3://{bucket} at {env['AWS_ENDPOINT_URL']} refused the credentials" in line
    assert no_model_ran(tmp_path / "run")
    assert SECRET not in said(done, tmp_path / "run") and "pose-runner-test" not in said(done, tmp_path / "run")


def test_a_bucket_that_does_not_exist_is_one_line(body, env, tmp_path):
    done = cli(f"input={COCO}", *body, "cache.dir=s3://no-such-bucket/cache", f"hydra.run.dir={tmp_path / 'run'}",
               env=env)
    assert one_line(done) == (f"error: bucket no-such-bucket does not exist at {env['AWS_ENDPOINT_URL']}: create it "
                              "(aws s3 mb s3://no-such-bucket) or fix the URL")


def test_credentials_in_a_url_are_refused_without_being_shown(body, env, tmp_path):
    done = cli(f"input={COCO}", *body, f"cache.dir=s3://AKIAEXAMPLE:{SECRET}@poses/cache",
               f"hydra.run.dir={tmp_path / 'run'}", env=env)
    line = one_line(done)
    assert "must not carry credentials" in line and "s3://***@poses/cache" in line
    assert SECRET not in said(done, tmp_path) and "AKIAEXAMPLE" not in said(done, tmp_path)


# -- the cache commands, replay and locks on a bucket ----------------------------


def test_cache_info_gc_and_clear_work_on_a_bucket_prefix(body, bucket, env, client, tmp_path):
    done = cli(f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache",
               f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    poses = computed(tmp_path / "run")["pose"]

    def cache(*args):
        return subprocess.run([sys.executable, "-m", "runner.cache", "--dir", f"s3://{bucket}/cache", *args],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    info = cache("info")
    assert info.returncode == 0, info.stderr
    rows = {tuple(line.split()[:3]) for line in info.stdout.splitlines()}
    assert ("detect", "rtmdet_nano_person", "4") in rows and ("pose", "rtmpose_t", str(poses)) in rows
    total = sum(o["Size"] for o in client.list_objects_v2(Bucket=bucket, Prefix="cache/stages/")["Contents"])
    gc = cache("gc", "--max-size", str(total - 1))  # one entry over: the least recently used one goes
    assert gc.returncode == 0 and gc.stdout.startswith("removed 1 entries"), gc.stdout + gc.stderr
    assert len(entries(client, bucket, "detect") + entries(client, bucket, "pose")) == 4 + poses - 1
    clear = cache("clear")
    assert clear.returncode == 0, clear.stderr
    assert entries(client, bucket, "detect") + entries(client, bucket, "pose") == []
    assert len(client.list_objects_v2(Bucket=bucket, Prefix="coco/")["Contents"]) == 4  # the inputs stay


def test_replay_checks_the_objects_of_a_bucket_input(body, bucket, env, client, tmp_path):
    done = cli(f"input=s3://{bucket}/coco/", *body, f"cache.dir=s3://{bucket}/cache",
               f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert done.returncode == 0, done.stderr[-2000:]

    def replay(out: str):
        return subprocess.run([sys.executable, "-m", "runner.replay", str(tmp_path / "run"), "--out", str(tmp_path / out)],
                              cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    same = replay("same")
    assert same.returncode == 0 and "identical predictions" in same.stdout, same.stdout + same.stderr
    first, second = sorted(COCO.glob("*.jpg"))[:2]
    name = first.name
    client.put_object(Bucket=bucket, Key=f"coco/{name}", Body=second.read_bytes())  # another image under its name
    changed = replay("changed")
    assert changed.returncode != 0 and f"input s3://{bucket}/coco/{name} changed since the run" in changed.stderr


def test_a_dead_holders_lease_is_broken_and_a_live_one_is_kept(s3, client, bucket, monkeypatch):
    from runner import atomic, objects
    from runner.cache.remote import ObjectLock
    for name, value in (("AWS_ENDPOINT_URL", s3.endpoint), ("AWS_ACCESS_KEY_ID", "pose-runner-test"),
                        ("AWS_SECRET_ACCESS_KEY", SECRET), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    objects.forget_client()
    monkeypatch.setattr(ObjectLock, "STALE_S", 0.5)
    monkeypatch.setattr(ObjectLock, "POLL_S", 0.05)
    holder = objects.Bucket(bucket)
    client.put_object(Bucket=bucket, Key="locks/dead.lock", Body=b"another host 123 abc 0\n")  # nobody beats it
    with atomic.holding(ObjectLock(holder, "locks/dead.lock"), "a test entry", "dead.lock", timeout_s=30):
        mine = client.get_object(Bucket=bucket, Key="locks/dead.lock")["Body"].read()
        assert not mine.startswith(b"another host")
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="locks/")  # released: removed
    live = ObjectLock(holder, "locks/live.lock")
    live.acquire(timeout=0)
    stop = threading.Event()
    beating = threading.Thread(target=lambda: [live.beat() for _ in iter(lambda: stop.wait(0.1), True)])
    beating.start()
    try:
        with pytest.raises(atomic.LockTimeout):  # beaten more often than it could go stale: never broken
            with atomic.holding(ObjectLock(holder, "locks/live.lock"), "a test entry", "live.lock", timeout_s=2.0):
                pass
    finally:
        stop.set()
        beating.join()
        live.release()
    objects.forget_client()


def test_a_profile_in_the_aws_files_gives_endpoint_region_and_credentials(s3, client, bucket, tmp_path, monkeypatch):
    """No AWS_* keys in the environment: botocore's chain reads them, and the
    endpoint, from ~/.aws-style files (a named profile)."""
    from runner import objects
    (tmp_path / "config").write_text(f"[profile lab]\nregion = eu-west-1\nendpoint_url = {s3.endpoint}\n")
    (tmp_path / "credentials").write_text(f"[lab]\naws_access_key_id = pose-runner-test\n"
                                          f"aws_secret_access_key = {SECRET}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "lab")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    objects.forget_client()
    try:
        assert objects.settings().endpoint == s3.endpoint and objects.settings().region == "eu-west-1"
        assert objects.Bucket(bucket).put("profile/ok.txt", b"written with the profile's keys")
        assert client.get_object(Bucket=bucket, Key="profile/ok.txt")["Body"].read() == \
            b"written with the profile's keys"
        assert objects.scrub(f"a message quoting {SECRET}") == "a message quoting ***"
        monkeypatch.setenv("AWS_PROFILE", "nobody")
        objects.forget_client()
        with pytest.raises(objects.StorageError, match="nobody"):
            objects.Bucket(bucket).get("profile/ok.txt")
    finally:
        objects.forget_client()


class Answering:
    """A WSGI layer: every request of `method` gets this S3 error answer."""

    def __init__(self, app, method: str, status: str, code: str):
        self.app, self.method, self.status, self.code = app, method, status, code

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != self.method:
            return self.app(environ, start_response)
        start_response(self.status, [("Content-Type", "application/xml")])
        return [f"<Error><Code>{self.code}</Code><Message>as a store answers</Message></Error>".encode()]


@pytest.mark.parametrize("status,code,said", [
    ("409 Conflict", "OperationAborted", "answered OperationAborted while writing"),
    ("400 Bad Request", "AuthorizationHeaderMalformed", "is in another region than us-east-1"),
])
def test_a_write_the_store_turns_away_is_one_line_never_taken_for_already_there(bucket, monkeypatch, status, code,
                                                                               said):
    """A plain write answered 409 must fail (the client reports every 409 as
    "already exists", which only a conditional write may take as its answer)."""
    from runner import objects
    server = S3Server()
    server.start(lambda app: Answering(app, "PUT", status, code))
    for name, value in (("AWS_ENDPOINT_URL", server.endpoint), ("AWS_ACCESS_KEY_ID", "pose-runner-test"),
                        ("AWS_SECRET_ACCESS_KEY", SECRET), ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("AWS_MAX_ATTEMPTS", "1")):
        monkeypatch.setenv(name, value)
    objects.forget_client()
    try:
        with pytest.raises(objects.StorageError) as refused:
            objects.Bucket(bucket).put("entries/one.bin", b"an entry")
        assert f"s3://{bucket} at {server.endpoint} {said}" in str(refused.value)
    finally:
        server.stop()
        objects.forget_client()

"""Interrupted runs: SIGKILL loses nothing computed and a re-run gives the
same bytes as an uninterrupted run; SIGTERM stops like Ctrl-C with a manifest;
a finished run can be replayed, and a changed input or checkpoint is named."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import cv2

from cases import (cli, folder_of, kill, one_line, run_folder_files, small_models, small_models_in_cache,  # noqa: F401
                   wait_for)
from conftest import ROOT


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def pose_entries(cache) -> int:
    return len(list((cache / "stages" / "pose").rglob("*.safetensors")))


def test_sigkill_then_resume_gives_the_bytes_of_an_uninterrupted_run(small_models, tmp_path):
    folder = folder_of(tmp_path, "photos", good=4)
    # batches of one: a box's numbers do not depend on which boxes share its batch
    args = [f"input={folder}", *small_models, "detect.batch_size=1", "pose.batch_size=1", "detect.bbox_thr=0.3"]
    whole = cli(*args, f"cache.dir={tmp_path / 'whole-cache'}", f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    total = json.loads((tmp_path / "whole" / "manifest.json").read_text())["stages"]["pose"]["units"]

    cache = tmp_path / "cache"
    run = start(*args, f"cache.dir={cache}", f"hydra.run.dir={tmp_path / 'killed'}")
    assert wait_for(lambda: pose_entries(cache) >= 5 or run.poll() is not None)
    kill(run, signal.SIGKILL)
    done_before = pose_entries(cache)
    assert 0 < done_before < total, "the kill came too late to interrupt anything"

    resumed = cli(*args, f"cache.dir={cache}", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stages = json.loads((tmp_path / "resumed" / "manifest.json").read_text())["stages"]
    assert stages["pose"]["cache_hits"] >= done_before and stages["pose"]["computed"] == total - stages["pose"]["cache_hits"]
    assert run_folder_files(tmp_path / "resumed") == run_folder_files(tmp_path / "whole")


def test_sigterm_stops_like_ctrl_c_and_leaves_a_manifest(small_models, tmp_path):
    folder = folder_of(tmp_path, "photos", good=4)
    cache, out = tmp_path / "cache", tmp_path / "run"
    run = start(f"input={folder}", *small_models, f"cache.dir={cache}", f"hydra.run.dir={out}", "detect.batch_size=1",
                "pose.batch_size=1", "detect.bbox_thr=0.3")
    assert wait_for(lambda: pose_entries(cache) >= 2 or run.poll() is not None)
    kill(run, signal.SIGTERM)
    assert run.returncode == 1
    assert run.stderr.read().strip().splitlines()[-1].startswith("interrupted: everything finished so far is cached")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["stages"]["pose"]["computed"] >= 2


def test_replay_is_identical_and_names_what_changed(small_models, tmp_path):
    folder = folder_of(tmp_path, "photos", good=2)
    first = cli(f"input={folder}", *small_models, f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert first.returncode == 0, first.stderr[-2000:]
    replay = lambda *more: subprocess.run([sys.executable, "-m", "runner.replay", str(tmp_path / "run"), *more],  # noqa: E731
                                          cwd=ROOT, capture_output=True, text=True)
    again = replay("--out", str(tmp_path / "replayed"), "--refresh")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "identical predictions" in again.stdout
    assert run_folder_files(tmp_path / "replayed") == run_folder_files(tmp_path / "run")
    edited = sorted(folder.glob("*.jpg"))[0]
    image = cv2.imread(str(edited))
    image[:20, :20] = 0
    cv2.imwrite(str(edited), image)
    line = one_line(replay("--out", str(tmp_path / "replayed2")))
    assert f"input {edited} changed since the run (sha256" in line


def test_a_video_killed_half_way_resumes_to_the_bytes_of_an_uninterrupted_run(small_models, tmp_path):
    """Every per-video output (overlay video, MMPose JSON, table, OpenPose, TRC)
    after SIGKILL and a re-run, against one uninterrupted run."""
    capture, frames = cv2.VideoCapture(str(ROOT.parent / "shared" / "data" / "video" / "demo.mp4")), []
    while (got := capture.read())[0]:
        frames.append(got[1])
    clip = tmp_path / "walk.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, frames[0].shape[1::-1])
    for i in range(16):
        writer.write(frames[i % len(frames)])
    writer.release()
    args = [f"input={clip}", *small_models, "detect.batch_size=1", "pose.batch_size=1", "detect.bbox_thr=0.3",
            "detect.every=4", "detect.every_kpt_thr=0", "smooth.enabled=true", "smooth.kpt_thr=0",
            "export.openpose=true", "export.table=csv", "export.trc=true"]
    whole = cli(*args, f"cache.dir={tmp_path / 'whole-cache'}", f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    cache = tmp_path / "cache"
    run = start(*args, f"cache.dir={cache}", f"hydra.run.dir={tmp_path / 'killed'}")
    assert wait_for(lambda: pose_entries(cache) >= 30 or run.poll() is not None)
    kill(run, signal.SIGKILL)
    resumed = cli(*args, f"cache.dir={cache}", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stages = json.loads((tmp_path / "resumed" / "manifest.json").read_text())["stages"]
    assert 0 < stages["pose"]["cache_hits"] < stages["pose"]["units"]  # it was interrupted, and resumed
    files = run_folder_files(tmp_path / "resumed")
    assert files == run_folder_files(tmp_path / "whole")
    assert {"overlays/walk.mp4", "predictions/walk.mp4.json", "tables/walk.mp4.csv"} <= set(files)


def test_show_without_a_display_says_so_and_writes_everything(small_models, tmp_path):
    video = ROOT.parent / "shared" / "data" / "video" / "demo.mp4"
    done = cli(f"input={video}", *small_models, "detect/model=whole_image", "show=true", "max_frames=2",
               f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
               env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("show=true: no display here") == 1
    assert (tmp_path / "run" / "overlays" / "demo.mp4").is_file()


def test_sigterm_to_a_submitit_job_leaves_an_interrupted_manifest(small_models, tmp_path):
    """Under a launcher the job is a process of its own (submitit's, as on Slurm,
    which ignores SIGTERM by itself): SIGTERM there, as Slurm's scancel or time
    limit sends it, must still end the job `interrupted`, its manifest written."""
    import psutil
    folder = folder_of(tmp_path, "photos", good=4)
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    run = start("-m", "hydra/launcher=submitit_local", f"input={folder}", *small_models, f"cache.dir={cache}",
                f"hydra.sweep.dir={sweep}", "detect.batch_size=1", "pose.batch_size=1", "detect.bbox_thr=0.3",
                "shard.count=1", "shard.index=0")

    def job():
        for child in psutil.Process(run.pid).children(recursive=True):
            if "submitit" in " ".join(child.cmdline()):
                return child
        return None

    assert wait_for(lambda: pose_entries(cache) >= 2 or run.poll() is not None)
    worker = job()
    assert worker is not None, "no submitit job process found"
    worker.send_signal(signal.SIGTERM)
    run.wait(timeout=600)
    manifest = json.loads((sweep / "0" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["signal"] == "SIGTERM"
    assert manifest["stages"]["pose"]["computed"] >= 2  # what it finished is counted (and cached)
    assert run.returncode == 1

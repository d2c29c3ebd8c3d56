"""Sweeps that choose: the sweep report (sweep.csv / .md / .png) written after
every multirun and by `python -m runner.report`, failed jobs as rows, and an
Optuna search (hydra/sweeper=tune) that reuses the cache across trials."""
from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import COCO, ROOT

BODY = COCO / "test_coco.json"


def fake_job(folder: Path, overrides: list[str], status: str = "ok", ap: float | None = None, error: str = ""):
    """A job folder as Hydra and the runner leave it."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("{}")
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    manifest = {"status": status, "config": {"sweep": {"metric": None}},
                "stages": {"detect": {"units": 4, "cache_hits": 0, "computed": 4, "seconds": 1.5},
                           "pose": {"units": 20, "cache_hits": 5, "computed": 15, "seconds": 2.0}}}
    if error:
        manifest["error"] = error
    if ap is not None:
        manifest["metrics"] = {"main": "AP", "values": {"AP": ap, "AR": ap + 0.1}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_report_has_a_row_per_job_names_the_best_and_plots(tmp_path):
    from runner import report
    from runner.sweep import collect
    sweep = tmp_path / "multirun"
    aps = {(0.3, "rtmpose_t"): 0.61, (0.3, "rtmpose_m"): 0.70, (0.5, "rtmpose_t"): 0.58}
    for n, ((thr, model), ap) in enumerate(aps.items()):
        fake_job(sweep / str(n), [f"detect.bbox_thr={thr}", f"pose/model={model}", "input=photos"], ap=ap)
    fake_job(sweep / "3", ["detect.bbox_thr=0.5", "pose/model=rtmpose_m", "input=photos"], status="error",
             error="cannot download https://x/rtmpose-m.pth (HTTP 404 Not Found)")
    written = report.write(collect(sweep))
    assert written.swept == ["detect.bbox_thr", "pose/model"] and written.metric == "AP"
    assert written.best["job"] == "1"
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[1]["AP"] == "0.7" and rows[1]["pose computed"] == "15" and rows[1]["detect seconds"] == "1.5"
    assert [r["rank"] for r in rows] == ["2", "1", "3", ""]  # by AP; the failed job has none
    assert rows[3]["status"] == "error" and "HTTP 404" in rows[3]["error"] and rows[3]["AP"] == ""
    md = (sweep / "sweep.md").read_text()
    assert "Best by AP (higher is better): job 1: detect.bbox_thr=0.3 pose/model=rtmpose_m, AP 0.7" in md
    assert "| **1** (best) | ok | 0.3 | rtmpose_m | 0.7 | 1 |" in md and "HTTP 404" in md
    assert (sweep / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = subprocess.run([sys.executable, "-m", "runner.report", str(sweep), "--metric", "AR"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "best by AR: job 1" in done.stdout


def test_report_of_a_folder_without_jobs_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "runner.report", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0 and "holds no sweep jobs" in done.stderr


def test_a_sweep_writes_its_report_and_failed_jobs_are_rows(make_checkpoint, server, tmp_path):
    """Four jobs; the two whose pose checkpoint cannot be had fail, the others finish."""
    det, pose = make_checkpoint("rtmdet_nano_person"), make_checkpoint("rtmpose_t")
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "runner", "-m", "recipe=body_rtmpose", f"input={COCO}", f"eval.ann_file={BODY}",
         "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t,rtmpose_s", "detect.bbox_thr=0.3,0.5",
         f"+download.checkpoints.rtmdet_nano_person={det[1]}", f"+download.checkpoints.rtmpose_t={pose[1]}",
         f"+download.checkpoints.rtmpose_s={server}/missing-0badc0de.pth", f"cache.dir={tmp_path / 'cache'}",
         f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr[-2000:]
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert [(r["pose/model"], r["detect.bbox_thr"], r["status"]) for r in rows] == [
        ("rtmpose_t", "0.3", "ok"), ("rtmpose_t", "0.5", "ok"), ("rtmpose_s", "0.3", "error"),
        ("rtmpose_s", "0.5", "error")]
    assert all("HTTP 404" in r["error"] for r in rows[2:]) and all(r["AP"] != "" for r in rows[:2])
    assert "Best by AP" in (sweep / "sweep.md").read_text() and (sweep / "sweep.png").stat().st_size > 0
    assert "sweep: 4 jobs, best by AP: job 0" in done.stdout and "2 of 4 job(s) not ok" in done.stdout


def test_tune_needs_ground_truth():
    done = subprocess.run([sys.executable, "-m", "runner", "-m", "hydra/sweeper=tune", f"input={COCO}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: hydra/sweeper=tune searches for the best metric: pass eval.ann_file=FILE "
                                   "(ground truth for the inputs)")


def test_a_bad_value_in_any_job_fails_before_the_first_job(tmp_path):
    done = subprocess.run([sys.executable, "-m", "runner", "-m", f"input={COCO}", "detect.bbox_thr=0.3,abc,0.5",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip() == "error: detect.bbox_thr=abc is not a number between 0 and 1"
    assert not (tmp_path / "sweep").exists()


def test_optuna_search_runs_each_model_unit_once(make_checkpoint, tmp_path, monkeypatch, forwards):
    """10 trials over bbox_thr, nms_thr and two pose models: the detector runs
    once per image and each (pose model, box) once in all, counted at the
    models' test_step (in this process: the basic launcher runs the trials here)."""
    from hydra.core.global_hydra import GlobalHydra
    from runner.__main__ import main
    ckpt = {name: make_checkpoint(name)[1] for name in ("rtmdet_nano_person", "rtmpose_t", "rtmpose_s")}
    sweep = tmp_path / "tune"
    monkeypatch.setattr(sys, "argv", [
        "runner", "-m", "hydra/sweeper=tune", "hydra.sweeper.n_trials=10", "pose/model=choice(rtmpose_t,rtmpose_s)",
        "recipe=body_rtmpose", f"input={COCO}", f"eval.ann_file={BODY}", "detect/model=rtmdet_nano_person",
        *[f"+download.checkpoints.{n}={url}" for n, url in ckpt.items()], f"cache.dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}"])
    handlers, level = logging.root.handlers[:], logging.root.level  # Hydra sets up logging for its jobs
    try:
        with pytest.raises(SystemExit) as end:
            main()
    finally:
        GlobalHydra.instance().clear()
        logging.root.handlers[:], logging.root.level = handlers, level
    assert end.value.code == 0
    jobs = [json.loads((sweep / str(n) / "manifest.json").read_text()) for n in range(10)]
    assert len({(j["config"]["detect"]["bbox_thr"], j["config"]["pose"]["model"]["name"]) for j in jobs}) == 10
    assert forwards["RTMDet"] == 4  # the COCO four, once
    boxes = set()
    for n, job in enumerate(jobs):
        model = job["config"]["pose"]["model"]["name"]
        for path in (sweep / str(n) / "predictions").glob("*.json"):
            boxes |= {(model, path.name, tuple(inst["bbox"])) for inst in json.loads(path.read_text())}
    assert forwards["TopdownPoseEstimator"] == len(boxes) > 0
    assert sum(j["stages"]["pose"]["computed"] for j in jobs) == len(boxes)
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["name"] == "optuna"
    assert len(list(csv.DictReader((sweep / "sweep.csv").open()))) == 10

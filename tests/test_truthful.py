"""Nothing that says ok may be wrong: statuses, sweep reports, merges, replays,
results files and cache keys tell the truth at the edges (no detections, dry
runs, refreshed or GPU-made shards, crashes, shards without ground truth,
unreadable inputs, ids that are not file names, a re-used run folder)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runner
from conftest import COCO, DATA, ROOT
from runner.errors import RunnerError

BODY_GT = COCO / "test_coco.json"


@pytest.fixture
def small(make_checkpoint, machine_dir):
    """RTMDet-nano + RTMPose-t from local files; exports and memos in the session's machine_dir."""
    det, pose = make_checkpoint("rtmdet_nano_person")[0], make_checkpoint("rtmpose_t")[0]
    return ["recipe=body_rtmpose", "detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
            f"+download.checkpoints.rtmdet_nano_person={det}", f"+download.checkpoints.rtmpose_t={pose}",
            f"cache.machine_dir={machine_dir}"]


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          **kwargs)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def api(small, folder, out, *more, recipe_args=True):
    args = [a for a in small if not a.startswith("recipe=")] if recipe_args else []
    return runner.run(recipe="body_rtmpose", input=folder, output_dir=out, overrides=[*args, *more])


# -- 1. zero predictions are a result ---------------------------------------------------

def test_a_job_that_finds_nobody_scores_zero_and_the_sweep_reports_every_job(small, tmp_path):
    sweep = tmp_path / "sweep"
    done = cli("-m", *small, f"input={COCO}", f"eval.ann_file={BODY_GT}", "detect.bbox_thr=0.3,1.0",
               f"cache.dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    nobody = manifest(sweep / "1")
    assert nobody["status"] == "ok" and nobody["stages"]["pose"]["units"] == 0
    values = nobody["metrics"]["values"]
    assert values["AP"] == 0 and values["AR"] == 0 and nobody["metrics"]["images"]["matched"] == 4
    assert json.loads((sweep / "1" / "results_coco.json").read_text()) == []
    assert (sweep / "sweep.md").is_file() and "| 1 | ok |" in (sweep / "sweep.md").read_text()


def test_hands_with_no_matched_prediction_score_pck_0():
    from runner.evaluation import Prediction, choose_metric, load_ground_truth, score
    from runner.models.registry import load_entry
    gt = load_ground_truth(DATA / "onehand10k" / "test_onehand10k.json")
    none = [Prediction(im["id"], np.zeros((0, 21, 2), np.float32), np.zeros((0, 21), np.float32),
                       np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) for im in gt.data["images"]]
    values = score(choose_metric(gt, load_entry("rtmpose_m_hand"), "box"), gt, none)
    assert values["PCK"] == 0 and values["AUC"] == 0 and values["matched_instances"] == 0
    assert values["gt_instances"] == 4 and "EPE" not in values  # no distance to average


# -- 2. a dry-run sweep ---------------------------------------------------------------------

def test_a_dry_run_sweep_exits_0_and_reports_what_each_job_would_compute(small, tmp_path):
    sweep = tmp_path / "sweep"
    done = cli("-m", *small, f"input={COCO}", "dry_run=true", "detect.bbox_thr=0.3,0.5",
               f"cache.dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for job in ("0", "1"):
        written = manifest(sweep / job)
        assert written["status"] == "ok" and written["dry_run"] is True
        assert sorted(p.name for p in (sweep / job).iterdir() if p.name != ".hydra" and p.suffix != ".log") == \
            ["manifest.json"]  # a dry run writes nothing else
    report = (sweep / "sweep.md").read_text()
    assert "ok (dry run)" in report and "detect to compute" in report and "a dry run runs no model" in report
    assert not (tmp_path / "cache" / "stages").exists()


# -- 3 and 5. merges: never refreshed, never re-decided ----------------------------------

def test_a_refreshed_sharded_sweep_merges(small, tmp_path):
    sweep = tmp_path / "sweep"
    done = cli("-m", *small, f"input={COCO}", "cache.refresh=true", "shard.count=2", "shard.index=0,1",
               f"cache.dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    merged = manifest(sweep / "merged")
    assert merged["status"] == "ok" and not merged["failed"] and merged["config"]["cache"]["refresh"] is False
    assert merged["stages"]["pose"]["computed"] == 0 and merged["stages"]["pose"]["cache_hits"] > 0


def test_the_merge_uses_the_shards_recorded_backend_not_this_hosts(small, tmp_path):
    """Shards that ran backend=auto on GPUs recorded what auto chose there
    (`pytorch`); re-deciding auto on a CPU submit host gives ONNX Runtime, whose
    keys no shard made: with cache.no_models, every merged item would fail."""
    from runner.merge import merge_all
    from runner.sweep import collect
    sweep = tmp_path / "sweep"
    done = cli("-m", *small, f"input={COCO}", "backend=pytorch", "shard.count=2", "shard.index=0,1",
               f"cache.dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-2000:]
    for job in ("0", "1"):  # as a GPU shard records it: auto asked for, pytorch chosen
        written = manifest(sweep / job)
        written["config"]["backend"]["name"] = "auto"
        written["backend"]["why"] = "auto: a CUDA GPU, where PyTorch runs the networks"
        (sweep / job / "manifest.json").write_text(json.dumps(written))
    (merged,) = merge_all(collect(sweep))
    assert merged.error is None and merged.complete, merged.line()
    assert merged.manifest["backend"]["name"] == "pytorch" and not merged.manifest["failed"]
    assert merged.manifest["stages"]["pose"]["cache_hits"] == merged.manifest["stages"]["pose"]["units"] > 0


# -- 4 and 11. image ids come from the annotation file --------------------------------------

def renamed_ground_truth(tmp_path: Path, names: dict[str, str], first_id: int = 5000) -> tuple[Path, Path, dict]:
    """The COCO four under other names (`names`: original -> new relative path)
    and a copy of test_coco.json that names them so, with ids that are not in
    any file name. Returns (input folder, annotation file, new id by original id)."""
    data = json.loads(BODY_GT.read_text())
    folder = tmp_path / "renamed"
    ids = {}
    for n, image in enumerate(sorted(data["images"], key=lambda im: im["file_name"])):
        new = names[image["file_name"]]
        (folder / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(COCO / image["file_name"], folder / new)
        ids[image["id"]] = first_id + n
        image["file_name"], image["id"] = new, first_id + n
    for ann in data["annotations"]:
        ann["image_id"] = ids[ann["image_id"]]
    ann_file = tmp_path / "renamed.json"
    ann_file.write_text(json.dumps(data))
    return folder, ann_file, ids


def test_results_coco_json_uses_the_annotation_files_ids_and_scores_as_the_metrics_do(small, tmp_path):
    from xtcocotools.coco import COCO as CocoApi
    originals = sorted(p.name for p in COCO.glob("*.jpg"))
    folder, ann_file, ids = renamed_ground_truth(tmp_path, {o: f"img_{'abcd'[i]}.jpg" for i, o in
                                                            enumerate(originals)})
    gt_boxes = ["detect/model=gt", f"cache.dir={tmp_path / 'cache'}"]
    plain = api(small, COCO, tmp_path / "plain", *gt_boxes, f"eval.ann_file={BODY_GT}")
    renamed = api(small, folder, tmp_path / "renamed-run", *gt_boxes, f"eval.ann_file={ann_file}")
    results = json.loads((tmp_path / "renamed-run" / "results_coco.json").read_text())
    assert {r["image_id"] for r in results} <= set(ids.values()) and len(results) == plain.stages["pose"]["units"]
    CocoApi(str(ann_file)).loadRes(str(tmp_path / "renamed-run" / "results_coco.json"))  # a valid results file
    assert renamed.metrics["values"] == plain.metrics["values"] and renamed.metrics["images"]["matched"] == 4


def test_inputs_in_sub_folders_match_their_own_ground_truth(small, tmp_path):
    """cam1/0001.jpg and cam2/0001.jpg: one file name in two folders, two images."""
    originals = sorted(p.name for p in COCO.glob("*.jpg"))
    names = {originals[0]: "cam1/0001.jpg", originals[1]: "cam2/0001.jpg", originals[2]: "cam1/0002.jpg",
             originals[3]: "cam2/0002.jpg"}
    folder, ann_file, ids = renamed_ground_truth(tmp_path, names)
    gt_boxes = ["detect/model=gt", f"cache.dir={tmp_path / 'cache'}", f"eval.ann_file={ann_file}"]
    result = api(small, folder, tmp_path / "run", *gt_boxes, "recursive=true")
    plain = api(small, COCO, tmp_path / "plain", "detect/model=gt", f"cache.dir={tmp_path / 'cache'}",
                f"eval.ann_file={BODY_GT}")
    assert result.metrics["values"] == plain.metrics["values"]
    by_name = {r["id"]: len(r["instances"]) for r in result.records}
    by_original = {r["id"]: len(r["instances"]) for r in plain.records}
    assert {n: by_name[new] for n, new in names.items()} == by_original  # each input got its own image's boxes
    with pytest.raises(RunnerError, match=r"input 0001.jpg matches 2 images of .*\(cam1/0001.jpg, cam2/0001.jpg\)"):
        api(small, folder / "cam1", tmp_path / "flat", *gt_boxes)  # which 0001.jpg? refused, not guessed


def test_two_inputs_that_find_one_image_are_refused():
    from runner.coco import ImageIds
    ids = ImageIds([{"file_name": "val/0001.jpg", "id": 7}, {"file_name": "0002.jpg", "id": 1}], "gt.json")
    assert ids.of("0001.jpg") == 7 and ids.of("x/val/0001.jpg") == 7 and ids.of("0002.jpg") == 1
    assert ids.of("0003.jpg") is None and ids.of("other/0001.jpg") is None and ids.of("1.jpg") is None
    with pytest.raises(RunnerError, match="inputs 0001.jpg and val/0001.jpg both match image id 7 of gt.json"):
        ids.check(["0001.jpg", "val/0001.jpg"])


# -- 6. the runtime and the device are in the keys ----------------------------------------

def test_model_keys_name_the_runtime_its_version_and_the_device(small, tmp_path, monkeypatch):
    from runner import versions
    from runner.backends.table import Backend
    assert Backend("onnxruntime").runtime_libs() == ("onnxruntime",)
    assert set(Backend("openvino", "int8").runtime_libs()) == {"openvino", "nncf"}
    assert Backend("pytorch").runs_on("cpu") != Backend("pytorch").runs_on("cuda:0")
    args = ["backend=onnxruntime", f"cache.dir={tmp_path / 'cache'}", "detect.bbox_thr=0.5"]
    first = api(small, sorted(COCO.glob("*.jpg"))[0], tmp_path / "a", *args)
    assert first.stages["pose"]["computed"] > 0
    real = versions.version
    monkeypatch.setattr(versions, "version", lambda name: "9.9.9" if name == "onnxruntime" else real(name))
    plan = api(small, sorted(COCO.glob("*.jpg"))[0], tmp_path / "b", *args, "dry_run=true")
    assert plan.stages["detect"]["would_compute"] == {"changed code": 1}  # an upgrade is new work


# -- 7. a crash is an error, with its message --------------------------------------------

def test_a_crash_is_recorded_as_error_with_its_message(small, tmp_path, monkeypatch):
    from runner.native.topdown import NativeTopdown

    def broken(self, inputs):
        raise ValueError("a bug in decoding")
    monkeypatch.setattr(NativeTopdown, "predict", broken)
    with pytest.raises(ValueError, match="a bug in decoding"):
        api(small, COCO, tmp_path / "run", f"cache.dir={tmp_path / 'cache'}", "detect.bbox_thr=0.5")
    written = manifest(tmp_path / "run")
    assert written["status"] == "error" and written["error"] == "ValueError: a bug in decoding"


CRASH_ON_RADIUS_5 = r"""
import os, runpy, sys
sys.path.insert(0, os.getcwd())
from runner import pipeline
go = pipeline.Run.go
def crashing(self):
    if int(self.cfg.visualize.radius) == 5:
        raise RuntimeError("out of memory (injected)")
    return go(self)
pipeline.Run.go = crashing
sys.argv[0] = "runner"
runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""


def test_a_crashing_sweep_job_is_a_row_with_its_error_and_the_others_finish(small, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(CRASH_ON_RADIUS_5)
    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, str(script), "-m", *small, f"input={sorted(COCO.glob('*.jpg'))[0]}",
                           "visualize.radius=5,3", f"cache.dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr[-2000:]
    crashed = manifest(sweep / "0")
    assert crashed["status"] == "error" and crashed["error"] == "RuntimeError: out of memory (injected)"
    assert manifest(sweep / "1")["status"] == "ok"  # the sweep went on
    report = (sweep / "sweep.md").read_text()
    assert "| 0 | error |" in report and "RuntimeError: out of memory (injected)" in report


# -- 8. a shard without annotated inputs ------------------------------------------------------

def test_a_shard_with_no_annotated_input_is_ok(small, tmp_path):
    """The COCO four and an unannotated photo, in as many shards as it takes
    for the photo's shard to hold nothing the ground truth names."""
    from runner.hashing import sha256_bytes
    from runner.shards import _shard
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in [*COCO.glob("*.jpg"), DATA / "sunglasses.jpg"]:
        shutil.copy(path, folder)
    key = lambda name: sha256_bytes((folder / name).read_bytes())  # noqa: E731
    count = next(n for n in range(2, 50) if _shard(key("sunglasses.jpg"), n) not in
                 {_shard(key(p.name), n) for p in COCO.glob("*.jpg")})
    index = _shard(key("sunglasses.jpg"), count)
    result = api(small, folder, tmp_path / "run", f"eval.ann_file={BODY_GT}", f"shard.count={count}",
                 f"shard.index={index}", f"cache.dir={tmp_path / 'cache'}")
    assert result.manifest["status"] == "ok" and [r["id"] for r in result.records] == ["sunglasses.jpg"]
    assert result.metrics["values"] == {} and "nothing scored" in result.metrics["note"]


# -- 9. replays of runs with unreadable inputs -------------------------------------------------

def test_a_run_with_an_unreadable_file_and_a_broken_video_replays(small, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sorted(COCO.glob("*.jpg"))[0], folder)
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "clip.mp4").write_bytes((DATA / "video" / "demo.mp4").read_bytes()[:3000])
    first = cli(*small, f"input={folder}", f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert first.returncode == 1  # two items failed
    items = {i["id"]: i for i in manifest(tmp_path / "run")["input"]["items"]}
    assert set(items) == {"000000000785.jpg", "broken.jpg", "clip.mp4"} and items["clip.mp4"]["sha256"] is None
    again = subprocess.run([sys.executable, "-m", "runner.replay", str(tmp_path / "run"), "--out",
                            str(tmp_path / "replayed")], cwd=ROOT, capture_output=True, text=True)
    assert "identical predictions" in again.stdout, again.stderr[-2000:]
    assert manifest(tmp_path / "replayed")["status"] == "failed"  # as the run was: the same two items


# -- 12. a cache entry that cannot be read now is not deleted -------------------------------

READ_WITH_NO_FILE_DESCRIPTORS = r"""
import os, resource, sys
import numpy as np
from runner.cache import EntryKey, Store
store = Store(sys.argv[1])
key = EntryKey.of("pose", "unit", None, None, None)
store.put(key, {"x": np.arange(3)})
used = len(os.listdir("/proc/self/fd")) - 1  # listdir held one of them
resource.setrlimit(resource.RLIMIT_NOFILE, (used, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print("got", store.get(key))
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print("then", store.get(key)["x"].tolist(), store.path(key).exists())
"""


def test_an_entry_that_cannot_be_read_now_is_kept(tmp_path):
    """Too many open files (EMFILE), as a busy job or a stale NFS handle gives: a miss, not a deletion."""
    done = subprocess.run([sys.executable, "-c", READ_WITH_NO_FILE_DESCRIPTORS, str(tmp_path / "stages")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "got None" in done.stdout and "then [0, 1, 2] True" in done.stdout
    assert "cannot read cache entry" in done.stderr and "the entry is kept" in done.stderr


def test_an_entry_whose_bytes_are_bad_is_still_dropped(tmp_path):
    from runner.cache import EntryKey, Store
    store = Store(tmp_path)
    key = EntryKey.of("pose", "unit", None, None, None)
    store.put(key, {"x": np.arange(3)})
    store.path(key).write_bytes(store.path(key).read_bytes()[:40])
    assert store.get(key) is None and not store.path(key).exists()


# -- 18 and 19. one run per run folder ---------------------------------------------------------

def test_a_run_folder_that_is_a_file_or_holds_other_files_is_refused_before_anything_is_written(small, tmp_path):
    (tmp_path / "a-file").write_text("mine")
    done = cli(*small, f"input={COCO}", f"hydra.run.dir={tmp_path / 'a-file'}", f"cache.dir={tmp_path / 'c'}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "is a file: pass a folder" in lines[0], done.stderr
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    done = cli(*small, f"input={COCO}", f"hydra.run.dir={home}", f"cache.dir={tmp_path / 'c'}")
    assert done.returncode == 1 and "holds files that are not a pose-runner run (e.g. notes.txt)" in done.stderr
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]  # not even Hydra's .hydra
    had_hydra = os.path.exists("/.hydra")
    done = cli(*small, f"input={COCO}", "hydra.run.dir=/", f"cache.dir={tmp_path / 'c'}")
    assert done.returncode == 1 and "the run folder / holds files" in done.stderr
    assert os.path.exists("/.hydra") == had_hydra and not os.path.exists("/manifest.json")


def test_a_re_used_run_folder_holds_only_the_new_run(small, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    images = sorted(COCO.glob("*.jpg"))
    for path in images[:2]:
        shutil.copy(path, first)
    shutil.copy(images[2], second)
    out = tmp_path / "out"
    args = [f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={out}"]
    assert cli(*small, f"input={first}", *args).returncode == 0
    assert cli(*small, f"input={second}", *args).returncode == 0
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [f"{images[2].name}.json"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [images[2].name]
    written = manifest(out)
    assert written["previous_run"]["status"] == "ok" and "predictions" in written["previous_run"]["removed"]
    again = subprocess.run([sys.executable, "-m", "runner.replay", str(out), "--out", str(tmp_path / "replayed")],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "missing in the replay" not in again.stdout, again.stdout


# -- 20. a video cut short ---------------------------------------------------------------------

def cut_video(path: Path, keep: float = 0.7) -> Path:
    """demo.mp4 with its media data lost after `keep` of it: it opens and declares 5 frames."""
    data = bytearray((DATA / "video" / "demo.mp4").read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    cut = at + 4 + int((size - 8) * keep)
    data[cut:at + size - 4] = bytes(at + size - 4 - cut)
    path.write_bytes(bytes(data))
    return path


def test_a_video_cut_short_says_how_many_of_its_frames_it_gave(small, tmp_path):
    from runner.pipeline import summary
    clip = cut_video(tmp_path / "cut.mp4")
    result = api(small, clip, tmp_path / "run", "detect/model=whole_image", f"cache.dir={tmp_path / 'cache'}")
    decoded = len(result.records)
    assert 0 < decoded < 5
    line = f"video cut.mp4: decoded {decoded} of 5 declared frames"
    assert any(w.startswith(line) for w in result.manifest["warnings"])
    assert f"warning: {line}" in summary(result, dry_run=False)


# -- 14c. a shard decodes only its own frames ------------------------------------------------

def test_a_shard_decodes_only_its_own_frames(small, tmp_path, monkeypatch):
    import cv2
    from runner import inputs
    decoded, capture = [], cv2.VideoCapture

    class Counting:
        def __init__(self, *args):
            self.capture = capture(*args)

        def read(self):
            ok, frame = self.capture.read()
            decoded.append(ok)
            return ok, frame

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(inputs.cv2, "VideoCapture", Counting)
    video = DATA / "video" / "demo.mp4"
    ids = []
    for index in (0, 1):
        decoded.clear()
        result = api(small, video, tmp_path / str(index), "detect/model=whole_image", "shard.count=2",
                     f"shard.index={index}", f"cache.dir={tmp_path / 'cache'}")
        ids += [r["frame_index"] for r in result.records]
        assert sum(decoded) == len(result.records)  # the other shard's frames were skipped undecoded
    assert sorted(ids) == [0, 1, 2, 3, 4]

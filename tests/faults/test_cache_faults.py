"""A cache that never lies: read-only caches serve without storing, damaged
entries and exports are found and made again, two processes compute each
entry once, and the cache commands count everything the cache holds."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

import runner
from cases import EROFS_PROCESS, cli, folder_of, one_line, read_only, small_models_in_cache  # noqa: F401
from conftest import COCO, ROOT, exports_in


def files(folder):
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("means", ["this machine's", "EROFS on every write"])
def test_a_read_only_cache_serves_hits_and_computes_misses_without_storing(small_models_in_cache, tmp_path, means):
    folder = folder_of(tmp_path, "photos", good=2)
    cache = tmp_path / "cache"
    first = cli(f"input={folder}", *small_models_in_cache, f"cache.dir={cache}", f"hydra.run.dir={tmp_path / 'warm'}",
                "detect.bbox_thr=0.6")
    assert first.returncode == 0, first.stderr[-2000:]
    before = files(cache)
    (tmp_path / "probe").mkdir()
    how, run = read_only(cache, tmp_path / "probe")
    if means != "this machine's":
        script = tmp_path / "probe" / "erofs.py"
        script.write_text(EROFS_PROCESS)
        how, run = means, lambda args: subprocess.run([sys.executable, str(script), str(cache), *args], cwd=ROOT,
                                                      capture_output=True, text=True)
    print(f"read-only cache by {how}")

    def on_read_only_cache(name, *more):
        return run([f"input={folder}", *small_models_in_cache, f"cache.dir={cache}", f"hydra.run.dir={tmp_path / name}",
                    *more])

    hits = on_read_only_cache("hits", "detect.bbox_thr=0.6")
    assert hits.returncode == 0, hits.stderr[-2000:]
    stages = json.loads((tmp_path / "hits" / "manifest.json").read_text())["stages"]
    assert stages["detect"]["computed"] == stages["pose"]["computed"] == 0 and stages["pose"]["cache_hits"] > 0
    misses = on_read_only_cache("misses", "detect.bbox_thr=0.3")  # new boxes: poses to compute
    assert misses.returncode == 0, misses.stderr[-2000:]
    stages = json.loads((tmp_path / "misses" / "manifest.json").read_text())["stages"]
    assert stages["pose"]["computed"] > 0
    said = misses.stdout + misses.stderr  # Hydra logs to stdout
    assert said.count("new ones are computed without being stored") == 1  # said once
    assert "Traceback" not in said and "onnxruntime" not in said
    assert files(cache) == before  # nothing written


def test_cache_dir_that_is_a_file_is_one_line(small_models_in_cache, tmp_path):
    (tmp_path / "cachefile").write_text("")
    line = one_line(cli(f"input={COCO}", *small_models_in_cache, f"cache.dir={tmp_path / 'cachefile'}",
                        f"hydra.run.dir={tmp_path / 'run'}"))
    assert "cache.dir=" in line and "is a file: point cache.dir" in line


@pytest.mark.parametrize("lock", ["auto", "create"])  # create: the lock network filesystems get
def test_two_processes_on_one_cache_compute_each_entry_once(small_models_in_cache, tmp_path, lock):
    folder = folder_of(tmp_path, "photos", good=4)
    args = [f"input={folder}", *small_models_in_cache, f"cache.dir={tmp_path / 'cache'}", "detect.batch_size=1",
            f"cache.lock={lock}"]
    runs = [subprocess.Popen([sys.executable, "-m", "runner", *args, f"hydra.run.dir={tmp_path / str(n)}"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for n in range(2)]
    for run in runs:
        assert run.wait(timeout=600) == 0, run.stderr.read()[-2000:]
    manifests = [json.loads((tmp_path / str(n) / "manifest.json").read_text()) for n in range(2)]
    assert sum(m["stages"]["detect"]["computed"] for m in manifests) == 4
    boxes = manifests[0]["stages"]["pose"]["units"]
    assert sum(m["stages"]["pose"]["computed"] for m in manifests) == boxes > 0
    if lock == "create":
        assert not list((tmp_path / "cache").rglob("*.lock"))  # lock files go with their release


def test_a_flipped_cache_entry_is_recomputed(small_models_in_cache, tmp_path, forwards):
    args = dict(recipe="body_rtmpose", input=sorted(COCO.glob("*.jpg"))[0],
                overrides=[*small_models_in_cache, f"cache.dir={tmp_path / 'cache'}"])
    first = runner.run(**args, output_dir=tmp_path / "a")
    (entry,) = (tmp_path / "cache" / "stages" / "detect").rglob("*.safetensors")
    data = bytearray(entry.read_bytes())
    data[-5] ^= 0x01
    entry.write_bytes(bytes(data))
    forwards.clear()
    again = runner.run(**args, output_dir=tmp_path / "b")
    assert forwards["RTMDet"] == 1 and again.records == first.records


@pytest.mark.parametrize("damage", ["truncated", "weights altered"])
def test_a_damaged_onnx_export_is_made_again_and_counted_by_the_cache_commands(make_checkpoint, tmp_path, damage):
    from runner.engines import forget_models
    pose = make_checkpoint("rtmpose_t")[0]
    args = dict(recipe="body_rtmpose", input=sorted(COCO.glob("*.jpg"))[0],
                overrides=["detect/model=whole_image", "pose/model=rtmpose_t", f"pose.model.checkpoint={pose}",
                           "backend=onnxruntime", f"cache.dir={tmp_path / 'cache'}"])
    forget_models()
    first = runner.run(**args, output_dir=tmp_path / "a")
    (export,) = exports_in(tmp_path / "cache" / "onnx")
    data = bytearray(export.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # the same size, other weights: only the checksum can tell
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(64)
    export.write_bytes(bytes(data))
    forget_models()  # a new process: only the files on disk remain
    args["overrides"].append("cache.refresh=true")  # the pose model must run, from the export
    again = runner.run(**args, output_dir=tmp_path / "b")
    assert again.records == first.records  # made again from the checkpoint, not trusted as found
    assert export.read_bytes() != bytes(data)

    def cache_cli(*more):
        return subprocess.run([sys.executable, "-m", "runner.cache", "--dir", str(tmp_path / "cache"), *more],
                              cwd=ROOT, capture_output=True, text=True)

    assert re.search(r"exported networks\s+-\s+2\s", cache_cli("info").stdout)  # the export, ORT's optimized graph
    assert cache_cli("clear").returncode == 0
    assert not list((tmp_path / "cache" / "onnx").glob("*.onnx"))


def test_gc_max_size_counts_the_exports(make_checkpoint, tmp_path):
    from runner.cache.__main__ import exports, gc
    onnx = tmp_path / "cache" / "onnx"
    onnx.mkdir(parents=True)
    (onnx / "net-1.onnx").write_bytes(bytes(1000))
    (onnx / "net-1.json").write_text("{}")
    assert len(exports(onnx)) == 1
    removed, freed = gc(tmp_path / "cache", onnx, max_size=10, older_than=None)
    assert removed == 1 and freed >= 1000 and not (onnx / "net-1.onnx").exists()
    shutil.rmtree(onnx)

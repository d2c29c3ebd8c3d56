"""Messy inputs: every good image's results are written, every bad one is a
failed item with one line (no traceback), the exit status says so."""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import runner
from cases import (GOOD, bomb_png, cli, folder_of, huge_jpeg_header, one_line, png_named_jpg,  # noqa: F401 (fixtures)
                   small_models, small_models_in_cache, zero_frame_video)
from runner.errors import RunnerError


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_a_messy_folder_writes_every_good_image_and_lists_every_bad_one(small_models, bomb, tmp_path):
    folder = folder_of(tmp_path, "messy", good=2)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    (folder / "truncated.jpg").write_bytes(GOOD[2].read_bytes()[:5000])
    png_named_jpg(folder / "really_a_png.jpg")
    shutil.copy(bomb, folder / "bomb.png")
    shutil.copy(GOOD[3], folder / "ünïcødé 写真.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    out = tmp_path / "run"
    done = cli(f"input={folder}", *small_models, f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={out}")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    failed = {f["id"]: f["error"] for f in manifest["failed"]}
    assert set(failed) == {"zero.jpg", "corrupt.jpg", "truncated.jpg", "bomb.png", "loop.jpg", "dangling.jpg"}
    assert all("\n" not in e for e in failed.values())
    assert "corrupt or not an image" in failed["zero.jpg"] and "corrupt or not an image" in failed["truncated.jpg"]
    assert "declares 400,000,000 pixels, over max_pixels=178,956,970" in failed["bomb.png"]
    assert "cannot read" in failed["loop.jpg"] and "cannot read" in failed["dangling.jpg"]
    good = sorted(p.name for p in GOOD[:2]) + ["really_a_png.jpg", "ünïcødé 写真.jpg"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(good)
    assert sorted(p.name for p in (out / "predictions").iterdir()) == sorted(f"{g}.json" for g in good)
    for name in failed:
        assert name in done.stdout  # the summary lists it


def test_a_dry_run_over_bad_images_does_not_crash(small_models, tmp_path):
    folder = folder_of(tmp_path, "messy", good=1)
    (folder / "zero.jpg").write_bytes(b"")
    done = cli(f"input={folder}", *small_models, f"cache.dir={tmp_path / 'cache'}", "dry_run=true",
               f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0 and "dry run: no model was run" in done.stdout, done.stderr[-2000:]


def test_an_image_over_opencvs_own_limit_is_a_failed_item(small_models, tmp_path):
    """max_pixels=null: our limit is off, OpenCV's raises inside imdecode."""
    folder = folder_of(tmp_path, "big", good=1)
    huge_jpeg_header(folder / "huge.jpg")
    result = runner.run(recipe="body_rtmpose", input=folder, output_dir=tmp_path / "out",
                        overrides=[*small_models, f"cache.dir={tmp_path / 'cache'}", "max_pixels=null"])
    assert [f["id"] for f in result.failed] == ["huge.jpg"] and "cannot decode image" in result.failed[0]["error"]
    assert len(result.records) == 2 and result.records[0]["instances"]


def test_a_video_that_decodes_no_frames_is_a_failed_item_without_decoder_noise(small_models, tmp_path):
    video = zero_frame_video(tmp_path / "broken.mp4")
    out = tmp_path / "run"
    done = cli(f"input={video}", *small_models, f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={out}")
    assert done.returncode == 1
    assert not [line for line in done.stderr.splitlines() if line.startswith("[")], done.stderr  # FFmpeg's "[h264 @"
    (failed,) = json.loads((out / "manifest.json").read_text())["failed"]
    assert failed["id"] == "broken.mp4" and "decoded no frames (of 5 it declares)" in failed["error"]
    assert "broken.mp4: video" in done.stdout


@pytest.mark.parametrize("make,expected", [
    (lambda d: (d / "cut.mp4").write_bytes((GOOD[0].parent.parent / "video" / "demo.mp4").read_bytes()[:3000]),
     "cannot open video"),
    (lambda d: (d / "empty").mkdir(), "has no images"),
    (lambda d: None, "does not exist: pass input=PATH"),
])
def test_unusable_inputs_fail_in_one_line(small_models, tmp_path, make, expected):
    make(tmp_path)
    target = next((p for p in tmp_path.iterdir() if p.name in ("cut.mp4", "empty")), tmp_path / "missing")
    line = one_line(cli(f"input={target}", *small_models, f"cache.dir={tmp_path / 'cache'}",
                        f"hydra.run.dir={tmp_path / 'run'}"))
    assert expected in line


def test_a_fifo_named_like_an_image_is_not_read_and_the_others_are(small_models, tmp_path):
    """A FIFO named x.jpg would block a read forever. A writer waits on each: if
    the runner ever opened one, the writer would feed it bytes and close it, as
    often as it is opened (a wrong error, never a hang)."""
    folder = folder_of(tmp_path, "photos", good=1)
    os.mkfifo(folder / "x.jpg")
    os.mkfifo(folder / "clip.mp4")

    def feed(path):
        while True:
            with open(path, "wb") as fifo:  # blocks until a reader opens it
                fifo.write(b"\x00" * 100)

    for name in ("x.jpg", "clip.mp4"):
        threading.Thread(target=feed, args=(folder / name,), daemon=True).start()
    result = runner.run(recipe="body_rtmpose", input=folder, output_dir=tmp_path / "out",
                        overrides=[*small_models, f"cache.dir={tmp_path / 'cache'}"])
    failed = {f["id"]: f["error"] for f in result.failed}
    assert set(failed) == {"x.jpg", "clip.mp4"}
    assert all("is a FIFO, not a file: not read" in e for e in failed.values()), failed
    assert (tmp_path / "out" / "predictions" / f"{GOOD[0].name}.json").is_file()


def degenerate_images(folder: Path) -> dict[str, np.ndarray]:
    """Images a model's own pre-processing may not take: extreme aspect ratios,
    a pixel, 16-bit, grey, with alpha."""
    images = {"wide_5000x1.png": np.full((1, 5000, 3), 128, np.uint8),
              "tall_1x5000.png": np.full((5000, 1, 3), 128, np.uint8),
              "wide_3000x2.png": np.full((2, 3000, 3), 128, np.uint8),
              "one_pixel.png": np.full((1, 1, 3), 128, np.uint8),
              "two_by_two.png": np.full((2, 2, 3), 128, np.uint8),
              "deep16.png": np.random.default_rng(0).integers(0, 65535, (100, 120, 3), dtype=np.uint16),
              "grey.png": np.full((100, 120), 128, np.uint8),
              "alpha.png": np.full((100, 120, 4), 128, np.uint8)}
    for name, image in images.items():
        cv2.imwrite(str(folder / name), image)
    return images


@pytest.mark.parametrize("detector,backend", [("rtmdet_nano_person", "auto"), ("whole_image", "auto"),
                                              ("rtmdet_nano_person", "pytorch")])  # MMDetection's own resize
def test_degenerate_images_are_a_failed_item_or_a_result_and_the_others_are_written(small_models, tmp_path,
                                                                                   detector, backend):
    folder = folder_of(tmp_path, "odd", good=1)
    made = degenerate_images(folder)
    out = tmp_path / "run"
    done = cli(f"input={folder}", *small_models, f"detect/model={detector}", f"backend={backend}",
               f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={out}")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    failed = {f["id"]: f["error"] for f in manifest["failed"]}
    assert manifest["status"] == ("failed" if failed else "ok") and done.returncode == (1 if failed else 0)
    written = {p.name.removesuffix(".json") for p in (out / "predictions").iterdir()}
    assert written | set(failed) == set(made) | {GOOD[0].name} and not written & set(failed)
    for name, error in failed.items():  # one line that names the input and what went wrong
        assert "\n" not in error and name in error and "cannot process" in error, error
    assert GOOD[0].name in written
    if backend == "pytorch":  # MMDetection's resize makes a side of 0 px: its own pre-processing refuses them
        assert {"wide_5000x1.png", "tall_1x5000.png", "wide_3000x2.png"} <= set(failed)


BOX = {"image_id": 785, "category_id": 1, "score": 0.9}


@pytest.mark.parametrize("detections,expected", [
    ([{**BOX, "bbox": [10, 20, float("nan"), 50]}], "entry 0 has bbox [10, 20, nan, 50]: a box is [x, y, width, height], "
                                                    "four finite numbers"),
    ([{**BOX, "bbox": [10, 20, 30, 50]}, {**BOX, "bbox": [10, 20, float("inf"), 50]}], "entry 1 has bbox [10, 20, inf"),
    ([{**BOX, "bbox": ["10", "20", "30", "50"]}], "entry 0 has bbox ['10', '20', '30', '50']"),
    ([{**BOX, "bbox": [10, 20, 30]}], "entry 0 has bbox [10, 20, 30]: a box is [x, y, width, height]"),
    ([{**BOX, "bbox": [300, 200, -50, 100]}], "entry 0 has bbox [300, 200, -50, 100]: its width and height must be "
                                              "positive (COCO boxes are [x, y, width, height], not corners)"),
    ([{**BOX, "bbox": [10, 20, 30, 50], "score": "high"}], "entry 0 has score 'high': a score is a number"),
    ([{"category_id": 1, "bbox": [10, 20, 30, 50]}], "entry 0 has no image_id"),
    ({"boxes": [{**BOX, "bbox": [10, 20, 30, 50]}]}, "is a JSON object without `annotations` or `detections`"),
    ([{**BOX, "image_id": 1234567, "bbox": [10, 20, 30, 50]}], "names none of the 1 input(s): its image ids are "
                                                                "1234567; an input's id is"),
])
def test_boxes_from_a_file_are_checked_before_any_model_runs(make_checkpoint, tmp_path, forwards, detections,
                                                             expected):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(detections))
    with pytest.raises(RunnerError) as refused:
        runner.run(recipe="body_rtmpose", input=GOOD[0], output_dir=tmp_path / "out",
                   overrides=["detect/model=from_file", f"detect.model.path={path}", "pose/model=rtmpose_t",
                              f"pose.model.checkpoint={make_checkpoint('rtmpose_t')[0]}",
                              f"cache.dir={tmp_path / 'cache'}"])
    message = str(refused.value)
    assert f"detections file {path}" in message and expected in message and "\n" not in message, message
    assert forwards == {} and not (tmp_path / "out" / "predictions").exists()


def _raise_out_of_memory(self, *args):
    raise RuntimeError("CUDA error: out of memory (injected)")


@pytest.mark.parametrize("what,network", [
    ("one image", "runner.native.topdown.NativeTopdown._infer"),
    ("two images", "runner.native.topdown.NativeTopdown._infer"),
    ("a video, detect.every=2", "runner.native.detector.NativeDetector._run"),
])
def test_a_failing_network_stops_the_run_whatever_the_batch(small_models, tmp_path, monkeypatch, what, network):
    """Only what an input's own pre-processing cannot take is the input's fault:
    the network failing (a bug, out of memory, a CUDA error) stops the run as
    `error`, with a batch of one (one image; a video's frames with detect.every)
    as with many; it is never a column of failed items."""
    monkeypatch.setattr(network, _raise_out_of_memory)
    video = GOOD[0].parent.parent / "video" / "demo.mp4"
    source = {"one image": GOOD[0], "two images": folder_of(tmp_path, "photos", good=2), "a video, detect.every=2":
              video}[what]
    more = ["detect.every=2", "max_frames=3"] if "video" in what else ["detect/model=whole_image"]
    with pytest.raises(RuntimeError, match="out of memory"):
        runner.run(recipe="body_rtmpose", input=source, output_dir=tmp_path / "out",
                   overrides=[*small_models, *more, f"cache.dir={tmp_path / 'cache'}"])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "error" and "out of memory (injected)" in manifest["error"]
    assert manifest["failed"] == []


def test_what_a_models_own_pre_processing_cannot_take_fails_alone_in_a_batch(small_models, tmp_path, monkeypatch):
    """The crop of one box failing (an OpenCV error injected for the second
    image's box) fails that image; the batch's other boxes are computed."""
    from runner.native import topdown
    crop, height = topdown.topdown_crop, cv2.imread(str(GOOD[1])).shape[0]

    def failing_for_one(image, box, *args):
        if image.shape[0] == height:
            raise cv2.error("warpAffine: injected")
        return crop(image, box, *args)
    monkeypatch.setattr(topdown, "topdown_crop", failing_for_one)
    result = runner.run(recipe="body_rtmpose", input=folder_of(tmp_path, "photos", good=3), output_dir=tmp_path / "out",
                        overrides=[*small_models, "detect/model=whole_image", f"cache.dir={tmp_path / 'cache'}"])
    assert [f["id"] for f in result.failed] == [GOOD[1].name]
    assert "pose cannot process" in result.failed[0]["error"] and "warpAffine: injected" in result.failed[0]["error"]
    assert result.manifest["status"] == "failed" and result.stages["pose"]["computed"] == 2


def test_a_name_too_long_for_the_filesystem_is_a_failed_item_and_the_others_are_written(small_models, tmp_path):
    """The longest name whose files fit is written; one byte more than the file
    system takes (its predictions file, NAME.json) is a failed item naming the limit."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    folder = folder_of(tmp_path, "long", good=1)
    fits = "a" * (limit - len(".jpg.json")) + ".jpg"  # predictions/<fits>.json is exactly the limit
    over = "b" * (limit - len(".jpg.json") + 1) + ".jpg"
    shutil.copy(GOOD[1], folder / fits)
    shutil.copy(GOOD[2], folder / over)
    out = tmp_path / "run"
    done = cli(f"input={folder}", *small_models, "detect/model=whole_image", f"cache.dir={tmp_path / 'cache'}",
               f"hydra.run.dir={out}")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (failed,) = json.loads((out / "manifest.json").read_text())["failed"]
    assert failed["id"] == over and "\n" not in failed["error"]
    assert f"{limit + 1} bytes, over the {limit} this file system takes" in failed["error"], failed["error"]
    assert sorted(p.name for p in (out / "predictions").iterdir()) == sorted(f"{n}.json" for n in (GOOD[0].name, fits))
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted([GOOD[0].name, fits])
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file left behind


def test_an_overlay_video_codec_this_opencv_cannot_write_is_one_line_before_any_frame(small_models, tmp_path):
    video = GOOD[0].parent.parent / "video" / "demo.mp4"
    out = tmp_path / "run"
    line = one_line(cli(f"input={video}", *small_models, "output.video_fourcc=zzzz", "max_frames=2",
                        f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={out}"))
    assert "output.video_fourcc=zzzz: this OpenCV cannot write an .mp4 video with it" in line
    assert "output.video_fourcc=mp4v" in line
    assert json.loads((out / "manifest.json").read_text())["stages"]["detect"]["units"] == 0

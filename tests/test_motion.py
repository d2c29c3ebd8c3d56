"""Motion: videos in folders and streams, frame_stride, detect.every, track
ids through crossings and occlusions, smoothing, and the formats motion
analysis reads. Clips are made here (two drawn figures crossing, so the truth
is known); boxes come from a detections file written from that truth where a
test is about tracking rather than the detector."""
from __future__ import annotations

import http.server
import json
import math
import shutil
import threading
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

import runner
from conftest import COCO, DATA

DEMO = DATA / "video" / "demo.mp4"
SIZE = (320, 240)  # width, height


def figure_boxes(frame: int, frames: int) -> dict[str, list[float] | None]:
    """Where the two figures are: A walks right, B walks left, they cross in
    the middle; A is hidden behind a wall for frames 26-28."""
    t = frame / (frames - 1)
    a = [20 + 220 * t, 60, 20 + 220 * t + 50, 200]
    b = [250 - 220 * t, 70, 250 - 220 * t + 50, 210]
    return {"A": None if 26 <= frame <= 28 else a, "B": b}


def crossing_clip(path: Path, frames: int = 36, fps: float = 12.0) -> dict[int, dict]:
    """An mp4 of the two figures, and the true boxes per frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    truth = {}
    for f in range(frames):
        image = np.full((SIZE[1], SIZE[0], 3), 200, np.uint8)
        boxes = figure_boxes(f, frames)
        for name, colour in (("A", (40, 40, 200)), ("B", (200, 60, 40))):
            if boxes[name] is not None:
                x1, y1, x2, y2 = map(int, boxes[name])
                cv2.rectangle(image, (x1, y1), (x2, y2), colour, -1)
                cv2.circle(image, ((x1 + x2) // 2, y1 - 12), 12, colour, -1)
        writer.write(image)
        truth[f] = boxes
    writer.release()
    return truth


def detections_file(path: Path, video: str, truth: dict[int, dict]) -> Path:
    """The true boxes as COCO results, keyed by the frames' ids (video#frame)."""
    dets = [{"image_id": f"{video}#{f:06d}", "category_id": 1, "score": 0.9,
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for f, boxes in truth.items() for b in boxes.values() if b is not None]
    path.write_text(json.dumps(dets))
    return path


@pytest.fixture
def run(make_checkpoint, cache_dir, tmp_path):
    det, pose = make_checkpoint("rtmdet_nano_person"), make_checkpoint("rtmpose_t")
    runs = iter(range(100))

    def go(input, *overrides):
        return runner.run(recipe="body_rtmpose", input=input, output_dir=tmp_path / "runs" / str(next(runs)),
                          overrides=["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t",
                                     f"+download.checkpoints.rtmdet_nano_person={det[1]}",
                                     f"+download.checkpoints.rtmpose_t={pose[1]}", f"cache.dir={cache_dir}",
                                     *overrides])
    return go


def frames_of(result) -> list[dict]:
    return json.loads(next((result.out_dir / "predictions").glob("*.json")).read_text())


# -- inputs ---------------------------------------------------------------------------

def test_output_video_keeps_the_frame_count_and_rate_and_frame_stride_keeps_every_nth(run, tmp_path):
    clip = tmp_path / "clip.mp4"
    crossing_clip(clip, frames=20, fps=12.0)
    whole = run(clip, "detect/model=whole_image")
    capture = cv2.VideoCapture(str(whole.out_dir / "overlays" / "clip.mp4"))
    assert (capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)) == (20, 12.0)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == SIZE
    strided = run(clip, "detect/model=whole_image", "frame_stride=3")
    assert [f["frame_id"] for f in frames_of(strided)] == list(range(0, 20, 3))
    capture = cv2.VideoCapture(str(strided.out_dir / "overlays" / "clip.mp4"))
    assert (capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)) == (7, 4.0)
    # a frame's key is its video's content and index: the strided frames were all cached
    assert strided.stages["pose"]["computed"] == 0


def test_a_mixed_recursive_folder_processes_everything_but_the_corrupt_video(run, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "day2").mkdir(parents=True)
    shutil.copy(sorted(COCO.glob("*.jpg"))[0], folder / "photo.jpg")
    crossing_clip(folder / "day2" / "clip.mp4", frames=6)
    (folder / "day2" / "broken.mp4").write_bytes(DEMO.read_bytes()[:3000])
    shallow = run(folder, "detect/model=whole_image")
    assert [r["id"] for r in shallow.records] == ["photo.jpg"]
    result = run(folder, "detect/model=whole_image", "recursive=true")
    assert [r["id"] for r in result.records] == ["day2/broken.mp4"] + [f"day2/clip.mp4#{i:06d}" for i in range(6)] + \
        ["photo.jpg"]
    assert [f["id"] for f in result.failed] == ["day2/broken.mp4"] and "cannot open video" in result.failed[0]["error"]
    out = result.out_dir
    assert (out / "overlays" / "day2" / "clip.mp4").is_file() and (out / "overlays" / "photo.jpg").is_file()
    assert (out / "predictions" / "day2" / "clip.mp4.json").is_file()
    items = {i["id"]: i for i in result.manifest["input"]["items"]}  # every input, the unreadable one too (replay)
    assert set(items) == {"photo.jpg", "day2/clip.mp4", "day2/broken.mp4"}
    assert items["day2/broken.mp4"]["sha256"] is None and "cannot open video" in items["day2/broken.mp4"]["error"]


def test_a_stream_url_is_read_like_a_webcam(run, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    crossing_clip(served / "live.mp4", frames=8)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(http.server.SimpleHTTPRequestHandler,
                                                                      directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = run(f"http://127.0.0.1:{httpd.server_port}/live.mp4", "detect/model=whole_image", "max_frames=5")
    finally:
        httpd.shutdown()
    assert [r["id"] for r in result.records] == [f"127.0.0.1_{httpd.server_port}_live.mp4#{i:06d}" for i in range(5)]
    assert result.manifest["input"]["kind"] == "live" and not result.failed


# -- detect.every -----------------------------------------------------------------------

def test_detect_every_n_runs_the_detector_on_one_frame_in_n(run, tmp_path, forwards):
    clip = tmp_path / "loop.mp4"
    capture, frames = cv2.VideoCapture(str(DEMO)), []
    while (got := capture.read())[0]:
        frames.append(got[1])
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, frames[0].shape[1::-1])
    for i in range(23):
        writer.write(frames[i % len(frames)])
    writer.release()
    every = run(clip, "detect.every=5", "detect.every_kpt_thr=0", "detect.bbox_thr=0.5")
    assert forwards["RTMDet"] == math.ceil(23 / 5)
    saved = frames_of(every)
    for frame in saved:
        derived = frame["frame_id"] % 5 != 0
        assert all(("bbox_from" in inst) == derived for inst in frame["instances"]), frame["frame_id"]
    forwards.clear()
    again = run(clip, "detect.every=5", "detect.every_kpt_thr=0", "detect.bbox_thr=0.5")
    assert forwards == {} and again.stages["pose"]["computed"] == 0  # derived boxes are cached like any other
    forwards.clear()
    run(clip, "detect.every=1", "detect.bbox_thr=0.5")  # only what depends on N runs again
    assert forwards["RTMDet"] == 23 - math.ceil(23 / 5)


# -- tracking -----------------------------------------------------------------------------

def test_tracker_keeps_ids_through_a_crossing_and_an_occlusion():
    from runner.tracking import Tracker
    tracker, seen = Tracker(iou_thr=0.3, max_lost=5), {"A": set(), "B": set()}
    for f in range(36):
        boxes = figure_boxes(f, 36)
        names = [n for n in ("B", "A") if boxes[n] is not None]  # not always in the same order
        for name, track_id in zip(names, tracker.update(np.array([boxes[n] for n in names]))):
            seen[name].add(track_id)
    assert seen == {"A": {1}, "B": {0}}


def test_a_track_keeps_its_id_when_its_box_changes_width():
    """A walker's box made from keypoints narrows and widens from frame to frame
    (swinging limbs). The tracker moves a box on by its centre's velocity and
    keeps its size: extrapolating the width's change too made this box 0 px wide
    at the third frame (IoU 0 with the walker's next box: a new id)."""
    from runner.tracking import Tracker
    tracker = Tracker(iou_thr=0.3, max_lost=5)
    walker = [[100, 100, 140, 200], [105, 100, 125, 200], [100, 100, 150, 200], [96, 100, 130, 200]]
    assert [tracker.update(np.array([box])) for box in walker] == [[0]] * 4


def test_track_ids_on_a_video_follow_the_figures(run, tmp_path):
    clip = tmp_path / "clip.mp4"
    truth = crossing_clip(clip)
    dets = detections_file(tmp_path / "dets.json", "clip.mp4", truth)
    result = run(clip, "detect/model=from_file", f"detect.model.path={dets}", "detect.model.category_id=null",
                 "track.enabled=true")
    ids = {"A": set(), "B": set()}
    for frame in frames_of(result):
        for inst in frame["instances"]:
            name = min(truth[frame["frame_id"]].items(), key=lambda kv: 1e9 if kv[1] is None else
                       abs(kv[1][0] - inst["bbox"][0]))[0]
            ids[name].add(inst["track_id"])
    assert ids == {"A": {ids["A"].copy().pop()}, "B": {ids["B"].copy().pop()}} and ids["A"] != ids["B"]
    assert result.stages["track"]["computed"] == 36


# -- smoothing ------------------------------------------------------------------------------

def noisy_track(seed: int = 0):
    """A keypoint at rest for 60 frames, then moving at 150 px/s for 60, with 3 px noise (30 fps)."""
    rng = np.random.default_rng(seed)
    truth = np.concatenate([np.full(60, 100.0), 100.0 + 5.0 * np.arange(1, 61)])
    return truth, truth + rng.normal(0, 3.0, len(truth))


def as_series(x: np.ndarray) -> np.ndarray:
    return np.stack([x, np.zeros_like(x)], axis=-1)[:, None, :]  # (T, 1 keypoint, 2)


def test_one_euro_reduces_jitter_and_lags_less_than_a_moving_average_of_equal_smoothing():
    from runner.filters import one_euro
    truth, noisy = noisy_track()
    smooth = one_euro(as_series(noisy), fps=30, min_cutoff=1.0, beta=0.05)[:, 0, 0]
    rest, moving = slice(20, 60), slice(90, 120)
    assert np.var(smooth[rest] - truth[rest]) < 0.5 * np.var(noisy[rest] - truth[rest])
    # the moving average whose window smooths the resting part at least as much
    for window in range(3, 61, 2):
        average = np.convolve(noisy, np.ones(window) / window)[:len(noisy)]  # causal, as One-Euro
        if np.var(average[rest] - truth[rest]) <= np.var(smooth[rest] - truth[rest]):
            break
    lag_euro = np.mean(truth[moving] - smooth[moving])
    lag_average = np.mean(truth[moving] - average[moving])
    assert 0 < lag_euro < 0.6 * lag_average, (lag_euro, lag_average, window)


def test_butterworth_is_zero_phase_and_hampel_removes_outliers():
    from runner.filters import butterworth, hampel
    t = np.arange(300) / 30.0
    truth = 50 * np.sin(2 * np.pi * 0.5 * t)
    noisy = truth + np.random.default_rng(1).normal(0, 2.0, len(t))
    smooth = butterworth(as_series(noisy), fps=30, cutoff_hz=3.0)[:, 0, 0]
    middle = slice(30, -30)
    assert np.abs(smooth[middle] - truth[middle]).max() < 2.0  # no lag: a phase shift would cost ~50 px * 2pi * delay
    assert np.var(smooth[middle] - truth[middle]) < 0.25 * np.var(noisy[middle] - truth[middle])
    spiky = noisy.copy()
    spiky[[50, 120, 200]] += 80
    cleaned, replaced = hampel(as_series(spiky), window=7, n_sigmas=3)
    assert set(np.flatnonzero(replaced[:, 0])) >= {50, 120, 200}
    assert np.abs(cleaned[[50, 120, 200], 0, 0] - truth[[50, 120, 200]]).max() < 10


def test_short_gaps_are_filled_and_marked_long_ones_left_missing():
    from runner.filters import fill_gaps
    x = np.arange(30, dtype=float)
    x[5:8] = np.nan     # 3 missing: filled
    x[15:27] = np.nan   # 12 missing: left
    filled, marked = fill_gaps(as_series(x), max_gap=10)
    np.testing.assert_allclose(filled[5:8, 0, 0], [5, 6, 7])
    assert np.isnan(filled[15:27, 0, 0]).all()
    assert list(np.flatnonzero(marked[:, 0])) == [5, 6, 7]


# -- the formats ----------------------------------------------------------------------------

def test_openpose_table_and_trc_parse_with_their_readers_and_agree_with_the_mmpose_json(run, tmp_path):
    import pandas as pd
    from runner.formats import read_trc
    clip = tmp_path / "clip.mp4"
    truth = crossing_clip(clip, frames=12)
    dets = detections_file(tmp_path / "dets.json", "clip.mp4", truth)
    common = ["detect/model=from_file", f"detect.model.path={dets}", "detect.model.category_id=null"]
    result = run(clip, *common, "export.openpose=true", "export.table=csv", "export.trc=true")
    out, frames = result.out_dir, frames_of(result)
    table = pd.read_csv(out / "tables" / "clip.mp4.csv")
    assert len(table) == sum(len(f["instances"]) for f in frames) * 17
    for frame in frames:
        opened = json.loads((out / "openpose" / "clip.mp4" / f"clip_{frame['frame_id']:012d}_keypoints.json").read_text())
        people = {p["person_id"][0]: p for p in opened["people"]}
        for inst in frame["instances"]:
            person = np.array(people[inst["track_id"]]["pose_keypoints_2d"]).reshape(17, 3)
            np.testing.assert_allclose(person[:, :2], inst["keypoints"], atol=1e-3)
            np.testing.assert_allclose(person[:, 2], inst["keypoint_scores"], atol=1e-3)
            rows = table[(table.frame == frame["frame_id"]) & (table.track_id == inst["track_id"])]
            np.testing.assert_allclose(rows[["x", "y"]].to_numpy(), inst["keypoints"], atol=1e-3)
    for track_id in table.track_id.unique():
        names, xyz = read_trc(out / "trc" / "clip.mp4" / f"track_{track_id:03d}.trc")
        rows = table[table.track_id == track_id]
        assert names[:3] == ["nose", "left_eye", "right_eye"] and len(xyz) == rows.frame.nunique()
        np.testing.assert_allclose(xyz[:, :, 0].reshape(-1), rows.x.to_numpy(), atol=1e-3)
        np.testing.assert_allclose(xyz[:, :, 1].reshape(-1), -rows.y.to_numpy(), atol=1e-3)  # Y up
    smoothed = run(clip, *common, "smooth.enabled=true", "smooth.kpt_thr=0", "export.table=parquet")
    table = pd.read_parquet(smoothed.out_dir / "tables" / "clip.mp4.parquet")
    assert table.x_smooth.notna().all() and (table.x_smooth - table.x).abs().max() > 0
    assert smoothed.stages["pose"]["computed"] == 0  # smoothing re-runs no model


# -- what cannot be smoothed is said ------------------------------------------------------------

def smooth_cfg(**given):
    from omegaconf import OmegaConf
    defaults = dict(method="one_euro", min_cutoff=1.0, beta=0.007, cutoff_hz=6.0, order=4, window=7, hampel=False,
                    hampel_sigmas=3.0, kpt_thr=0.3, max_gap=10)
    return OmegaConf.create({**defaults, **given})


@pytest.mark.parametrize("given,frames,fps,why", [
    (dict(method="butterworth"), 60, 6.0, "cutoff_hz=6 is at or above the Nyquist frequency (3 Hz)"),
    (dict(method="butterworth"), 5, 30.0, "butterworth of order 4 needs more than 15 frames in a row"),
    (dict(method="median", window=1000), 5, 30.0, "a median over smooth.window=1001 frames needs 1001 frames"),
    (dict(method="median", window=1), 50, 30.0, "smooth.window=1: a median of one frame smooths nothing"),
])
def test_a_filter_that_cannot_smooth_a_track_says_why_and_keeps_its_samples(given, frames, fps, why):
    from runner.filters import smooth_track
    _, noisy = noisy_track()
    done = smooth_track(as_series(noisy[:frames]), fps, smooth_cfg(**given))
    assert not done.smoothed.any() and why in done.why_not
    np.testing.assert_array_equal(done.xy, as_series(noisy[:frames]))  # x_smooth is the sample itself, marked so


def test_a_filter_that_can_smooth_says_nothing_and_changes_the_series():
    from runner.filters import smooth_track
    _, noisy = noisy_track()
    done = smooth_track(as_series(noisy), 30.0, smooth_cfg(method="butterworth"))
    assert done.smoothed.all() and done.why_not is None and np.abs(done.xy - as_series(noisy)).max() > 0


@pytest.mark.parametrize("given,why", [
    (["frame_stride=2"], "butterworth cutoff_hz=6 is at or above the Nyquist frequency (1.25 Hz) of the kept frames "
                         "(2.5 fps): lower smooth.cutoff_hz or frame_stride (its longest run is 3 frames)"),
    (["smooth.cutoff_hz=1"], "butterworth of order 4 needs more than 15 frames in a row (its longest run is 5 "
                             "frames)"),
])
def test_tracks_left_unsmoothed_are_named_in_the_summary_and_marked_in_the_table(run, given, why):
    """demo.mp4: 5 frames at 5 fps, one track (the whole image)."""
    import pandas as pd
    from runner.pipeline import summary
    result = run(DATA / "video" / "demo.mp4", "detect/model=whole_image", "smooth.enabled=true",
                 "smooth.method=butterworth", "smooth.kpt_thr=0", "export.table=csv", *given)
    notes = [w for w in result.manifest["warnings"] if "track" in w]
    assert notes == [f"demo.mp4 track 0: not smoothed: {why}"]
    assert f"warning: {notes[0]}" in summary(result, dry_run=False)
    table = pd.read_csv(result.out_dir / "tables" / "demo.mp4.csv")
    assert not table.smoothed.any() and (table.x_smooth == table.x).all()


def test_draw_bbox_false_draws_no_track_box(run, tmp_path):
    clip = tmp_path / "clip.mp4"
    truth = crossing_clip(clip, frames=3)
    dets = detections_file(tmp_path / "dets.json", "clip.mp4", truth)
    common = [clip, "detect/model=from_file", f"detect.model.path={dets}", "detect.model.category_id=null",
              "track.enabled=true", "visualize.kpt_thr=1.0"]  # no keypoint drawn: only what boxes leave

    def first_frame(result):
        capture = cv2.VideoCapture(str(result.out_dir / "overlays" / "clip.mp4"))
        return capture.read()[1].astype(int)

    boxed, bare = first_frame(run(*common)), first_frame(run(*common, "visualize.draw_bbox=false"))
    x1, y1, x2, y2 = map(int, truth[0]["B"])
    edge = (slice(y1 + 20, y2 - 5), slice(x2 - 1, x2 + 2))  # the right side of B's box, below the id label
    inside = (slice(y1 + 20, y2 - 5), slice(x1 + 10, x2 - 10))
    assert np.abs(boxed[edge] - bare[edge]).mean() > 40  # the box is in one overlay only
    assert np.abs(boxed[inside] - bare[inside]).mean() < 5  # elsewhere they agree (the codec's noise)

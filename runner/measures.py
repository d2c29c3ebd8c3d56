"""What the choosing features did in a video run, measured from the run's own
outputs (predictions/VIDEO.json and tables/VIDEO.csv): when `detect.every` ran
the detector again and why, how many track ids against how many people were in
view, and how much the keypoints jitter before and after smoothing.
tests/test_real_poses.py holds these on real poses; benchmarks/real_poses.py
publishes them in BENCHMARKS.md ("Real poses")."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

FOLLOWED = "followed: boxes from the previous frame's keypoints"
DUE = "due: one frame in detect.every"
NOBODY = "the previous frame had nobody"
UNSURE = "the previous frame's keypoints were all below detect.every_kpt_thr"


def detections(frames: list[dict], every: int, frame_stride: int = 1) -> list[str]:
    """Per frame of a video's predictions (MMPose's [{frame_id, instances}]),
    whether the detector ran and why, as the exported records show it: a frame
    whose boxes are "previous frame" was followed; any other frame was
    detected, either because it was due or because there was nobody to follow
    (the previous frame had no instance, or none with two confident keypoints)."""
    reasons, previous = [], None
    for frame in frames:
        if any(i.get("bbox_from") == "previous frame" for i in frame["instances"]):
            reasons.append(FOLLOWED)
        elif frame["frame_id"] // frame_stride % every == 0 or previous is None:
            reasons.append(DUE)
        else:
            reasons.append(NOBODY if not previous["instances"] else UNSURE)
        previous = frame
    return reasons


def people_in_view(frames: list[dict]) -> list[int]:
    """Per frame, the people the detector keeps (a run with detect.every=1)."""
    return [len(frame["instances"]) for frame in frames]


def tracks(frames: list[dict]) -> dict[int, int]:
    """Each track id of a tracked video and the number of frames it is in."""
    return dict(Counter(i["track_id"] for frame in frames for i in frame["instances"]))


def jitter(table: Path, kpt_thr: float) -> dict:
    """Mean |second difference| (px) of each keypoint's position over three
    consecutive kept frames of one track, raw and smoothed, on the same
    triples: those whose three raw samples are at least `kpt_thr` confident
    and whose smoothed samples the filter smoothed. On a keypoint moving at a
    steady pace it is 0; a detection's frame-to-frame noise adds to it, and so
    does real acceleration (the part no filter should remove)."""
    import pandas as pd
    rows = pd.read_csv(table).sort_values(["track_id", "keypoint", "frame"])
    raw, smooth, triples = [], [], 0
    for _, series in rows.groupby(["track_id", "keypoint"], sort=False):
        frames = series["frame"].to_numpy()
        usable = ((series["score"] >= kpt_thr) & series["smoothed"].astype(bool)).to_numpy()
        if len(frames) < 3:
            continue
        step = np.diff(frames)
        ok = usable[:-2] & usable[1:-1] & usable[2:] & (step[:-1] == step[1:])
        if not ok.any():
            continue
        for columns, out in ((["x", "y"], raw), (["x_smooth", "y_smooth"], smooth)):
            xy = series[columns].to_numpy(np.float64)
            second = xy[2:] - 2 * xy[1:-1] + xy[:-2]
            out.append(np.linalg.norm(second[ok], axis=1))
        triples += int(ok.sum())
    if not triples:
        return {"triples": 0, "raw_px": None, "smoothed_px": None, "ratio": None}
    before, after = float(np.concatenate(raw).mean()), float(np.concatenate(smooth).mean())
    return {"triples": triples, "raw_px": before, "smoothed_px": after, "ratio": after / before}


def write_frames(video: Path, folder: Path, max_frames: int | None = None) -> list[Path]:
    """A video's frames as lossless PNGs named VIDEO_NNNN.png (an int8
    calibration folder, or a folder every contender decodes alike)."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    capture, written = cv2.VideoCapture(str(video)), []
    while max_frames is None or len(written) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        written.append(folder / f"{video.stem}_{len(written):04d}.png")
        cv2.imwrite(str(written[-1]), frame)
    capture.release()
    return written


def image_folder(folder: Path, sources: list[Path], videos: list[Path]) -> Path:
    """One folder of every image of `sources` (folders or files; names prefixed
    by their folder's, so two 1.jpg stay two) and every frame of `videos`: an
    int8 calibration set made of what there is."""
    import shutil
    from runner.inputs import IMAGE_EXTS
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for path in sorted(source.iterdir()) if source.is_dir() else [source]:
            if path.suffix.lower() in IMAGE_EXTS:
                shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
    for video in videos:
        write_frames(video, folder)
    return folder

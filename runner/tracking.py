"""Following people across frames: boxes derived from the previous frame's
keypoints (detect.every: the detector runs on one frame in N, as rtmlib's
PoseTracker does), and track ids (one per person, kept through crossings and
short occlusions).

The tracker matches each frame's boxes to the tracks' predicted boxes by IoU,
solved as an assignment problem (the Hungarian method: munkres, pure Python
and quick to import, where scipy.optimize takes half a second). A track's box
is moved on at its centre's constant velocity, so two people who cross keep
their ids; its size is not extrapolated (a box made from keypoints changes width
with every stride, and extrapolating that shrank a walker's thin box to nothing:
BENCHMARKS.md, "Real poses"); a track unmatched for more than max_lost frames is
dropped."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.boxes import from_keypoints, iou


def boxes_from_poses(poses: list[dict], kpt_thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Next frame's boxes from this frame's poses, scored by the mean
    confidence of the keypoints they were made from."""
    boxes, scores = [], []
    for pose in poses:
        box = from_keypoints(pose["keypoints"][..., :2], pose["keypoint_scores"], kpt_thr)
        if box is not None:
            boxes.append(box)
            scores.append(float(pose["keypoint_scores"][pose["keypoint_scores"] >= kpt_thr].mean()))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)


def centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


@dataclass
class Track:
    id: int
    box: np.ndarray
    velocity: np.ndarray  # centre change per frame (x, y)
    lost: int = 0

    def predicted(self) -> np.ndarray:
        return self.box + np.tile(self.velocity * (self.lost + 1), 2)


class Tracker:
    def __init__(self, iou_thr: float = 0.3, max_lost: int = 30):
        self.iou_thr, self.max_lost = iou_thr, max_lost
        self.tracks: list[Track] = []
        self.next_id = 0

    def update(self, boxes: np.ndarray) -> list[int]:
        """The track id of each of this frame's boxes (N, 4)."""
        from munkres import Munkres
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids: list[int | None] = [None] * len(boxes)
        matched: set[int] = set()
        if self.tracks and len(boxes):
            overlap = iou(np.array([t.predicted() for t in self.tracks]), boxes)
            for t, b in Munkres().compute((1.0 - overlap).tolist()):
                if overlap[t, b] >= self.iou_thr:
                    track = self.tracks[t]
                    track.velocity = (centre(boxes[b]) - centre(track.box)) / (track.lost + 1)
                    track.box, track.lost = boxes[b], 0
                    ids[b] = track.id
                    matched.add(t)
        for t, track in enumerate(self.tracks):
            if t not in matched:
                track.lost += 1
        self.tracks = [t for t in self.tracks if t.lost <= self.max_lost]
        for b, found in enumerate(ids):
            if found is None:
                self.tracks.append(Track(self.next_id, boxes[b], np.zeros(2)))
                ids[b] = self.next_id
                self.next_id += 1
        return ids


def kept_position(frame_index: int, frame_stride: int) -> int:
    """A frame's place among its video's kept frames (frame_stride)."""
    return frame_index // frame_stride


def detection_block(frame_index: int, frame_stride: int, every: int) -> int:
    """The run of `every` kept frames, from a detection on, a frame belongs to."""
    return kept_position(frame_index, frame_stride) // every


class DetectEvery:
    """detect.every=N on a video: the detector runs on one frame in N, and on
    any frame whose previous frame has no pose to follow; between, each
    person's box is made from their keypoints in the previous frame. Frames go
    through detect and pose one at a time (each needs the one before)."""

    def __init__(self, every: int, kpt_thr: float, frame_stride: int = 1, dry_run: bool = False):
        self.every, self.kpt_thr, self.stride, self.dry_run = every, kpt_thr, frame_stride, dry_run
        self.last: tuple[str, int] | None = None  # (video, frame index) the previous poses are of
        self.previous = None

    def before(self, record) -> None:
        """Give a frame that is not due for the detector its boxes. Due: every
        N-th kept frame of its video, so a sharded run detects on the same frames."""
        item = record.item
        if item.frame_index is None or not record.ok or kept_position(item.frame_index, self.stride) % self.every == 0:
            return
        follows = self.last == (item.name, item.frame_index - self.stride)
        if not follows or self.previous is None:
            if self.dry_run and follows:  # the previous frame's poses are not computed yet
                record.box_source = "pending"
            return
        boxes, scores = boxes_from_poses(self.previous, self.kpt_thr)
        if len(boxes):  # else nobody to follow: the detector runs
            record.boxes, record.box_scores, record.box_source = boxes, scores, "previous frame"

    def after(self, record) -> None:
        item = record.item
        known = record.ok and item.frame_index is not None and record.poses_known()
        self.last = (item.name, item.frame_index) if item.frame_index is not None else None
        self.previous = [p for p in record.poses or []] if known else None

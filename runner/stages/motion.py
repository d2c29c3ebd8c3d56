"""smooth: per video, each track's keypoint series, filtered as smooth.*
asks (runner.filters: One-Euro, Butterworth, median, Hampel, short gaps
filled), written in the formats motion analysis reads (runner.formats):
OpenPose JSON per frame, a CSV / Parquet table, an OpenSim .trc per track.

It runs after track and needs no model, so changing its parameters re-runs
nothing else. While a video streams, its raw series are spilled to a scratch
file in the run folder (memory stays flat in video length); at the video's
end, or when the run stops, the series are filtered and written."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from runner.filters import longest_run, smooth_track
from runner.formats import TableWriter, openpose_person, write_openpose, write_trc
from runner.stages.base import Record, Stage
from runner.stages.export import keypoint_parts

CHUNK_FRAMES = 2000  # table rows are written this many frames of a track at a time


class Smooth(Stage):
    name = "smooth"

    def setup(self) -> None:
        cfg = self.ctx.cfg
        self.smooth = cfg.smooth if cfg.smooth.enabled else None
        self.export = cfg.export
        self.parts = keypoint_parts(cfg)
        self.names: list[str] | None = None
        self.video: str | None = None
        self.spilled = 0
        self.notes: list[str] = []  # per track, what was not smoothed and why

    def warnings(self) -> list[str]:
        return self.notes

    # -- streaming ------------------------------------------------------------
    def run(self, records: list[Record]) -> None:
        start = time.perf_counter()
        for record in records:
            item = record.item
            if not record.ok or item.frame_index is None or record.track_ids is None or not record.poses_known():
                continue
            self.stats.units += 1
            if self.ctx.outputs is None:
                continue
            if item.name != self.video:
                self._write_video()
                self._begin(item)
            self.frames.append(item.frame_index)
            for track_id, pose in zip(record.track_ids, record.poses or []):
                self._name_keypoints(len(pose["keypoints"]))
                row = np.concatenate([[item.frame_index, track_id], pose["keypoints"][..., :2].reshape(-1),
                                      pose["keypoint_scores"]]).astype(np.float64)
                self.spill.write(row.tobytes())
            self.stats.computed += 1
        self.stats.seconds += time.perf_counter() - start

    def plan(self, records: list[Record]) -> None:
        self.stats.units += sum(1 for r in records if r.ok and r.item.frame_index is not None)

    def finish(self) -> None:
        start = time.perf_counter()
        self._write_video()  # also after an interruption: everything seen so far is written
        self.stats.seconds += time.perf_counter() - start

    def _begin(self, item) -> None:
        self.video, self.frames = item.name, []
        self.video_fps, self.fps = float(item.video_fps or 25.0), float(item.fps or 25.0)  # its own; of the kept frames
        self.spilled += 1
        self.spill_path = self.ctx.outputs.root / ".series" / f"{self.spilled}.bin"
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        self.spill = open(self.spill_path, "wb")

    def _name_keypoints(self, count: int) -> None:
        """The keypoint set's names: the model entry's set, or (an ONNX file) the set of `count` keypoints."""
        if self.names is None:
            from runner.native.keypoints import for_count
            self.names = list(for_count(count, self.ctx.cfg.pose.model.get("keypoints")).names)

    # -- at a video's end -------------------------------------------------------
    def _write_video(self) -> None:
        if self.video is None:
            return
        self.spill.close()
        k = len(self.names or [])
        rows = np.fromfile(self.spill_path, np.float64).reshape(-1, 2 + 3 * k) if k else np.zeros((0, 2))
        tracks = {int(t): rows[rows[:, 1] == t] for t in np.unique(rows[:, 1])}
        series = {t: self._series(r, k) for t, r in tracks.items()}
        for track_id, s in sorted(series.items()):
            self._note(track_id, s)
        if self.export.table:
            self._table(series)
        if self.export.trc:
            for track_id, s in series.items():
                xy = s["smooth"] if s["smooth"] is not None else s["xy"]
                write_trc(self.ctx.outputs.path("trc", f"{self.video}/track_{track_id:03d}", "trc"), self.names,
                          self.fps, s["frames"], self._seconds(s["frames"]), xy)
        if self.export.openpose:
            self._openpose(series)
        self.spill_path.unlink()
        if not any(self.spill_path.parent.iterdir()):
            self.spill_path.parent.rmdir()
        self.video = None

    def _seconds(self, frames: np.ndarray) -> np.ndarray:
        """A frame index's time in the video."""
        return frames / self.video_fps

    def _series(self, rows: np.ndarray, k: int) -> dict:
        """A track on the video's frame grid: raw xy (NaN where missing or
        below smooth.kpt_thr), scores, smoothed xy and the interpolated mask."""
        stride = int(self.ctx.cfg.frame_stride)
        first, last = int(rows[0, 0]), int(rows[-1, 0])
        frames = np.arange(first, last + 1, stride)
        at = ((rows[:, 0] - first) // stride).astype(int)
        xy = np.full((len(frames), k, 2), np.nan)
        scores = np.zeros((len(frames), k))
        xy[at] = rows[:, 2:2 + 2 * k].reshape(-1, k, 2)
        scores[at] = rows[:, 2 + 2 * k:]
        observed = np.zeros(len(frames), bool)
        observed[at] = True
        kept = xy.copy()
        if self.smooth is not None:
            kept[scores < float(self.smooth.kpt_thr)] = np.nan
            done = smooth_track(kept, self.fps, self.smooth)
            smooth, filled, smoothed, why = done.xy, done.filled, done.smoothed, done.why_not
        else:
            smooth, filled, smoothed, why = None, np.zeros(xy.shape[:2], bool), np.zeros(xy.shape[:2], bool), None
        return {"frames": frames, "xy": xy, "scores": scores, "observed": observed, "smooth": smooth,
                "filled": filled, "smoothed": smoothed, "why_not": why, "kept": ~np.isnan(kept[..., 0])}

    def _note(self, track_id: int, s: dict) -> None:
        """Say what of a track was not smoothed, and why (the summary, the manifest)."""
        if s["why_not"] is None:
            return
        valid = s["kept"] | s["filled"]
        left = int((valid & ~s["smoothed"]).sum())
        what = "not smoothed" if not s["smoothed"].any() else \
            f"{left} of {int(valid.sum())} keypoint samples not smoothed"
        self.notes.append(f"{self.video} track {track_id}: {what}: {s['why_not']} (its longest run is "
                          f"{longest_run(valid)} frames)")

    def _table(self, series: dict) -> None:
        kind = str(self.export.table)
        writer = TableWriter(self.ctx.outputs.path("tables", self.video, "csv" if kind == "csv" else "parquet"),
                             kind)
        k = len(self.names)
        for track_id, s in sorted(series.items()):
            rows = np.flatnonzero(s["observed"] | s["filled"].any(axis=1))
            for at in range(0, len(rows), CHUNK_FRAMES):
                chunk = rows[at:at + CHUNK_FRAMES]
                smooth = s["smooth"][chunk] if s["smooth"] is not None else np.full((len(chunk), k, 2), np.nan)
                writer.add({"video": np.repeat(self.video, len(chunk) * k),
                            "frame": np.repeat(s["frames"][chunk], k),
                            "time_s": np.repeat(self._seconds(s["frames"][chunk]), k),
                            "track_id": np.full(len(chunk) * k, track_id),
                            "keypoint": np.tile(self.names, len(chunk)),
                            "x": s["xy"][chunk, :, 0].reshape(-1), "y": s["xy"][chunk, :, 1].reshape(-1),
                            "score": s["scores"][chunk].reshape(-1),
                            "x_smooth": smooth[..., 0].reshape(-1), "y_smooth": smooth[..., 1].reshape(-1),
                            "smoothed": s["smoothed"][chunk].reshape(-1),
                            "interpolated": s["filled"][chunk].reshape(-1)})
        writer.close()

    def _openpose(self, series: dict) -> None:
        """One file per frame of the video, every track seen in it (smoothed
        keypoints when smoothing is on)."""
        stem = Path(self.video).name.rsplit(".", 1)[0]
        index = {t: {int(f): i for i, f in enumerate(s["frames"])} for t, s in series.items()}
        for frame in self.frames:
            people = []
            for track_id, s in sorted(series.items()):
                i = index[track_id].get(int(frame))
                if i is None or not s["observed"][i]:
                    continue
                xy = s["smooth"][i] if s["smooth"] is not None else s["xy"][i]
                people.append(openpose_person(track_id, xy, s["scores"][i], self.parts))
            write_openpose(self.ctx.outputs.path("openpose", f"{self.video}/{stem}_{int(frame):012d}_keypoints",
                                                 "json"), people)

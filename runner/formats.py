"""The file formats motion analysis reads, per video: OpenPose's per-frame
JSON, a table (CSV or Parquet, one row per frame x track x keypoint), and
OpenSim's .trc (one per track, as Pose2Sim and Sports2D write them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runner import atomic

# OpenPose's arrays, from the pose model's named parts (a whole-body model); a
# model without parts puts every keypoint in pose_keypoints_2d.
OPENPOSE_ARRAYS = {"pose_keypoints_2d": ("body", "feet"), "face_keypoints_2d": ("face",),
                   "hand_left_keypoints_2d": ("left_hand",), "hand_right_keypoints_2d": ("right_hand",)}


def openpose_person(track_id: int, xy: np.ndarray, scores: np.ndarray, parts: dict) -> dict:
    """One person of an OpenPose JSON: [x, y, confidence, ...] per array; a
    missing keypoint is 0, 0, 0 as OpenPose writes it."""
    flat = np.concatenate([np.nan_to_num(xy, nan=0.0), np.where(np.isnan(xy[:, :1]), 0.0, scores[:, None])], 1)
    person: dict = {"person_id": [int(track_id)]}
    for array, names in OPENPOSE_ARRAYS.items():
        if parts:
            rows = [flat[start:stop] for name in names if name in parts for start, stop in [parts[name]]]
            values = np.concatenate(rows) if rows else np.zeros((0, 3))
        else:
            values = flat if array == "pose_keypoints_2d" else np.zeros((0, 3))
        person[array] = [round(float(v), 3) for v in values.reshape(-1)]
    for array in ("pose_keypoints_3d", "face_keypoints_3d", "hand_left_keypoints_3d", "hand_right_keypoints_3d"):
        person[array] = []
    return person


def write_openpose(path: Path, people: list[dict]) -> None:
    atomic.write_json(path, {"version": 1.3, "people": people}, sort_keys=True)


TABLE_COLUMNS = ("video", "frame", "time_s", "track_id", "keypoint", "x", "y", "score", "x_smooth", "y_smooth",
                 "smoothed", "interpolated")


class TableWriter:
    """Rows in chunks (flat memory), to CSV or Parquet."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind, self.rows = path, kind, 0
        self.tmp = atomic.temporary_beside(path)
        self._parquet = None

    def add(self, columns: dict[str, np.ndarray]) -> None:
        import pandas as pd
        frame = pd.DataFrame({c: columns[c] for c in TABLE_COLUMNS})
        if self.kind == "csv":
            frame.to_csv(self.tmp, mode="a" if self.rows else "w", header=not self.rows, index=False,
                         float_format="%.3f", lineterminator="\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp, table.schema)
            self._parquet.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self.rows:
            self.tmp.replace(self.path)


def write_trc(path: Path, names: list[str], fps: float, frames: np.ndarray, times: np.ndarray,
              xy: np.ndarray) -> None:
    """OpenSim's .trc for one track: X right, Y up (minus the image row), Z 0,
    in pixels; a missing keypoint is an empty field. Frames (1, 2, ...) count
    the track's own frames; Time is the video's time in seconds."""
    lines = [f"PathFileType\t4\t(X/Y/Z)\t{path.name}",
             "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
             "\t".join(map(str, [round(fps, 6), round(fps, 6), len(frames), len(names), "px", round(fps, 6),
                                 int(frames[0]) if len(frames) else 0, len(frames)])),
             "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t",
             "\t\t" + "\t".join(f"X{i + 1}\tY{i + 1}\tZ{i + 1}" for i in range(len(names))),
             ""]
    for n, (seconds, points) in enumerate(zip(times, xy)):
        cells = [str(n + 1), f"{seconds:.6f}"]
        for x, y in points:
            cells += ["", "", ""] if np.isnan(x) else [f"{x:.3f}", f"{-y:.3f}", "0"]
        lines.append("\t".join(cells))
    atomic.write_bytes(path, ("\n".join(lines) + "\n").encode())


def read_trc(path: Path) -> tuple[list[str], np.ndarray]:
    """(marker names, (frames, markers, 3) coordinates) of a .trc (for tests and users)."""
    lines = Path(path).read_text().splitlines()
    names = [n for n in lines[3].split("\t")[2:] if n]
    rows = [line.split("\t") for line in lines[6:] if line.strip()]
    values = np.array([[float(v) if v else np.nan for v in row[2:2 + 3 * len(names)]] for row in rows])
    return names, values.reshape(len(rows), len(names), 3)


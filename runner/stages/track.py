"""track: a track id for each person of a video, frame after frame
(runner.tracking.Tracker). Not cached: it is cheap and a pure function of the
boxes, so a re-run gives the same ids. Images are not tracked."""
from __future__ import annotations

import time

from runner.stages.base import Record, Stage
from runner.tracking import Tracker


class Track(Stage):
    name = "track"

    def setup(self) -> None:
        self.cfg = self.ctx.cfg.track
        self.video: str | None = None
        self.tracker: Tracker | None = None

    def run(self, records: list[Record]) -> None:
        start = time.perf_counter()
        for record in records:
            if not record.ok or record.boxes is None or record.item.frame_index is None:
                continue
            if record.item.name != self.video:  # a new video: new tracks
                self.video = record.item.name
                self.tracker = Tracker(float(self.cfg.iou_thr), int(self.cfg.max_lost))
            record.track_ids = self.tracker.update(record.boxes)
            self.stats.units += 1
            self.stats.computed += 1
        self.stats.seconds += time.perf_counter() - start

    plan = run

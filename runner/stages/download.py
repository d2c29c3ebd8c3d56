"""download: resolve every checkpoint the recipe's models need, before any item."""
from __future__ import annotations

import time

from runner.stages.base import Stage


class Download(Stage):
    name = "download"

    def setup(self) -> None:
        start = time.perf_counter()
        for role in self.ctx.model_roles():
            checkpoint = self.ctx.checkpoint(role)
            self.stats.units += 1
            if checkpoint is None:  # dry run, not at hand
                self.stats.reasons["not downloaded yet"] += 1
            elif checkpoint.origin == "download":
                self.stats.computed += 1
            else:
                self.stats.hits += 1
        self.stats.seconds += time.perf_counter() - start

    def run(self, records) -> None:
        pass

    plan = run

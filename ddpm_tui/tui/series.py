"""A live chart's series, read incrementally."""

from __future__ import annotations

import threading
from typing import Callable

# (run id, metric key, max points, after step) -> (steps, values, wall times): Lab.series
SeriesReader = Callable[[int, str, int, "int | None"], tuple[list[int], list[float], list[float]]]


class SeriesFollower:
    """One metric series of a run kept up to date for a live chart: the first read takes the
    series evenly thinned, every later read only the points after the last one held; past twice
    `max_points` every other point is dropped, so the series stays evenly thinned. A run that went
    back (resumed from an older checkpoint, its later points deleted) is read again whole."""

    def __init__(self, read: SeriesReader, run_id: int, key: str, max_points: int = 2000):
        self.read, self.run_id, self.key, self.max_points = read, run_id, key, max_points
        self.steps: list[int] = []
        self.values: list[float] = []
        self.walls: list[float] = []
        self.lock = threading.Lock()  # a refresh still reading when the next one starts must not interleave

    def update(self, run_step: int) -> tuple[list[int], list[float], list[float]]:
        with self.lock:
            return self._update(run_step)

    def _update(self, run_step: int) -> tuple[list[int], list[float], list[float]]:
        if self.steps and run_step < self.steps[-1]:
            self.steps, self.values, self.walls = [], [], []
        after = self.steps[-1] if self.steps else None
        steps, values, walls = self.read(self.run_id, self.key, self.max_points, after)
        self.steps += steps
        self.values += values
        self.walls += walls
        if len(self.steps) > 2 * self.max_points:
            self.steps, self.values, self.walls = self.steps[::2], self.values[::2], self.walls[::2]
        return list(self.steps), list(self.values), list(self.walls)

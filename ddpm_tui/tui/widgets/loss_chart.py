"""A plotext line chart of one or more metric series, with smoothing, log-y and x-axis choices."""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot

from core.smoothing import smooth as ema_smooth

MAX_POINTS = 2000


def thin(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """Every k-th point so a series has at most max_points."""
    if len(xs) <= max_points:
        return xs, ys
    stride = math.ceil(len(xs) / max_points)
    return xs[::stride], ys[::stride]


class LossChart(PlotextPlot):
    """`show({label: (xs, ys)}, ...)` redraws the chart; `drawn` says how many points each series got."""

    DEFAULT_CSS = "LossChart { min-height: 10; }"
    drawn: dict[str, int] = {}

    def show(self, series: dict[str, tuple[list, list]], title: str = "", xlabel: str = "step",
             smooth: bool = False, log_y: bool = False) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlabel(xlabel)
        self.drawn = {}
        for label, (xs, ys) in series.items():
            xs, ys = thin(list(xs), list(ys))
            if log_y:
                pairs = [(x, y) for x, y in zip(xs, ys) if y is not None and y > 0]
                xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            if not xs:
                continue
            plt.plot(xs, ema_smooth(ys) if smooth else ys, label=label, marker="braille")
            self.drawn[label] = len(xs)
        if log_y and self.drawn:
            plt.yscale("log")
        if not self.drawn:
            plt.title(f"{title} (no data yet)")
        self.refresh()

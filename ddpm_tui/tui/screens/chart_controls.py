"""Chart toggles shared by the screens that show a LossChart (run detail, compare); their keys are
the "chart" scope of ddpm_tui.keys."""

from __future__ import annotations


class ChartControls:
    """Smoothing and log-y only redraw (`redraw()`); the x axis and the metric need a new read
    (`reload()`). The screen keeps `self.keys`, the metric names it can show."""

    metric = "train/loss"
    smooth, log_y, wall_x = True, False, False
    keys: list[str] = []

    def redraw(self) -> None:
        raise NotImplementedError

    def reload(self) -> None:
        raise NotImplementedError

    def action_toggle_smooth(self) -> None:
        self.smooth = not self.smooth
        self.notify(f"smoothing {'on' if self.smooth else 'off'}")
        self.redraw()

    def action_toggle_log(self) -> None:
        self.log_y = not self.log_y
        self.redraw()

    def action_toggle_x(self) -> None:
        self.wall_x = not self.wall_x
        self.reload()

    def action_next_metric(self) -> None:
        keys = self.keys or [self.metric]
        self.metric = keys[(keys.index(self.metric) + 1) % len(keys)] if self.metric in keys else keys[0]
        self.notify(f"metric: {self.metric}")
        self.reload()

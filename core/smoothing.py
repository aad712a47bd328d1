"""Bias-corrected exponential moving averages, for the smoothed loss of the table and the charts."""

from __future__ import annotations


class RunningMean:
    """Bias-corrected exponential moving average (the 'smoothed loss' of the runs table)."""

    def __init__(self, weight: float = 0.98):
        self.weight, self.avg, self.n = weight, 0.0, 0

    def update(self, value: float) -> None:
        self.n += 1
        self.avg = self.weight * self.avg + (1 - self.weight) * value

    @property
    def value(self) -> float:
        return self.avg / (1 - self.weight**self.n) if self.n else float("nan")

    def state_dict(self) -> dict:
        return {"avg": self.avg, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.avg, self.n = float(state["avg"]), int(state["n"])


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Every prefix's running mean (TensorBoard-style smoothing of a curve)."""
    mean, out = RunningMean(weight), []
    for v in values:
        mean.update(v)
        out.append(mean.value)
    return out

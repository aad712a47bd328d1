"""Intervals for reported numbers: means over images or seeds, proportions, bootstrap."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int
    method: str


def mean_ci(values, confidence: float = 0.95) -> Interval:
    """Mean with the Student-t interval mean +- t_{(1+c)/2, n-1} s / sqrt(n); one value gives no
    interval (low = high = the value)."""
    from scipy.stats import t as student_t

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, mean, mean, len(x), "t")
    half = float(student_t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, len(x), "t")


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """A proportion with the Wilson score interval (Wilson 1927), sound near 0 and 1 and for small n."""
    from scipy.stats import norm

    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "wilson")
    z = float(norm.ppf((1 + confidence) / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, "wilson")


def bootstrap_ci(statistic: Callable[[np.random.Generator], float], value: float, n: int, rounds: int = 200,
                 seed: int = 0, confidence: float = 0.95) -> Interval:
    """Percentile bootstrap: `statistic(rng)` recomputes the number on one resample drawn with rng."""
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng) for _ in range(rounds)])
    alpha = (1 - confidence) / 2
    return Interval(value, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)), n, "bootstrap")

"""Intervals for reported numbers: means over images or seeds, proportions, bootstrap.

The Student-t distribution is computed here from the regularized incomplete beta function rather
than imported from scipy.stats, whose import alone takes a second: `ddpm-tui rank` has half a
second in all. numpy is imported only by the bootstrap.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int
    method: str


def incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (Abramowitz &
    Stegun 26.5.8) evaluated with the modified Lentz method; the symmetry I_x(a, b) = 1 - I_{1-x}(b, a)
    keeps x on the side where the fraction converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - incomplete_beta(1.0 - x, b, a)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for
    t >= 0 (Abramowitz & Stegun 26.7.1), mirrored for t < 0."""
    tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on student_t_cdf to 1e-12."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def mean_ci(values, confidence: float = 0.95) -> Interval:
    """Mean with the Student-t interval mean +- t_{(1+c)/2, n-1} s / sqrt(n); one value gives no
    interval (low = high = the value); a NaN or infinite value makes all three NaN (statistics.stdev
    would raise on it), for the caller to treat as a failed number."""
    x = [float(v) for v in values]
    if not all(math.isfinite(v) for v in x):
        return Interval(math.nan, math.nan, math.nan, len(x), "t")
    mean = statistics.fmean(x)
    if len(x) < 2:
        return Interval(mean, mean, mean, len(x), "t")
    half = student_t_quantile((1 + confidence) / 2, len(x) - 1) * statistics.stdev(x) / math.sqrt(len(x))
    return Interval(mean, mean - half, mean + half, len(x), "t")


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """A proportion with the Wilson score interval (Wilson 1927), sound near 0 and 1 and for small n."""
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "wilson")
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, "wilson")


def bootstrap_ci(statistic: Callable, value: float, n: int, rounds: int = 200, seed: int = 0,
                 confidence: float = 0.95) -> Interval:
    """Percentile bootstrap: `statistic(rng)` recomputes the number on one resample drawn with rng
    (a numpy Generator seeded with `seed`)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng) for _ in range(rounds)])
    alpha = (1 - confidence) / 2
    return Interval(value, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)), n, "bootstrap")

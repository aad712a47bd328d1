"""Calibration of the tie rule by simulation with known truth: how often sweeps of equal
configurations get a "worse" mark (the family-wise error, to be <= 5%), and how often one
configuration better by a given number of seed standard deviations is found with all the others
marked worse (the power). Vectorised over sweeps: one call of the rule per setting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.rank.significance import ALPHA, student_t_sf_elementwise, worse_p_values

DISTRIBUTIONS = ("normal", "skewed")


@dataclass(frozen=True)
class Calibration:
    configs: int
    seeds: int
    distribution: str
    shift_sds: float  # how much better configuration 0 is, in seed standard deviations
    sweeps: int
    any_worse: float  # share of sweeps with at least one configuration marked worse
    found: float  # share of sweeps whose best (by mean) is configuration 0
    all_others_worse: float  # share of sweeps with configuration 0 best and every other marked worse
    others_worse: float  # share of the other configurations marked worse, over all sweeps


def seed_values(rng, sweeps: int, configs: int, seeds: int, distribution: str):
    """Values with mean 0 and sd 1 per seed, shape (sweeps, configs, seeds): normal, or skewed (a
    standardised lognormal with sigma 1, skewness 6.2)."""
    import numpy as np

    if distribution == "normal":
        return rng.standard_normal((sweeps, configs, seeds))
    if distribution == "skewed":
        mean, sd = np.exp(0.5), np.sqrt((np.e - 1) * np.e)
        return (rng.lognormal(0.0, 1.0, (sweeps, configs, seeds)) - mean) / sd
    raise ValueError(f"unknown distribution {distribution!r} (choose from {', '.join(DISTRIBUTIONS)})")


def calibrate(configs: int, seeds: int, distribution: str, shift_sds: float = 0.0, sweeps: int = 4000,
              seed: int = 0, t_sf: Callable = student_t_sf_elementwise) -> Calibration:
    """Simulate `sweeps` sweeps (lower is better; configuration 0 lowered by `shift_sds`) and apply
    the tie rule to each. `t_sf` as in worse_p_values (pass scipy.stats.t.sf for speed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    values = seed_values(rng, sweeps, configs, seeds, distribution)
    values[:, 0, :] -= shift_sds
    means, variances = values.mean(axis=-1), values.var(axis=-1, ddof=1)
    worse = worse_p_values(means, variances, np.full(means.shape, seeds), "lower", t_sf) <= ALPHA
    found = means.argmin(axis=-1) == 0
    return Calibration(configs, seeds, distribution, shift_sds, sweeps, float(worse.any(axis=-1).mean()),
                       float(found.mean()), float((found & worse[:, 1:].all(axis=-1)).mean()),
                       float(worse[:, 1:].mean()) if configs > 1 else 0.0)

"""Statistics of an ablation: each configuration's mean with a 95% interval, which configurations
are significantly worse than the best, and the main effects of the factors.

- A configuration evaluated with several seeds: the mean over seeds and its Student-t interval.
- With one seed: that run's own uncertainty, the percentile bootstrap of its per-image values
  (or, for numbers without per-image values, the interval the evaluation stored), and it says so.
  It is never compared (neither tied nor worse): a claim about configurations needs the spread over
  seeds, which one seed cannot show, and per-image values measure only the evaluation's own noise.
- Worse / tied (TIE_RULE): all k(k-1) one-sided Welch t-tests "i is worse than j" between the
  configurations with at least 2 seeds, Holm-corrected together. A configuration is worse when it is
  significantly worse than some other one; its p-value is the smallest Holm-adjusted p of those
  tests. Every wrong "worse" mark, including one caused by picking the best from the data, is a
  rejected true hypothesis of that one family, so the family-wise error is at most 5%. The best
  (best mean among them) can never be marked: its tests all point the other way.
- Two configurations whose seeds all agree within each (zero variance on both sides) have no test
  (p = 1): a t-test needs spread, and equal seeds mean the evaluation ignored the seed.
- A value that is not finite (NaN, inf: a failed evaluation) is never ranked: split_finite leaves
  it out and the caller says which runs.
- Main effects: per level of each factor, the mean over the runs at that level (all other factors
  and seeds), with its t-interval; for a 2x2 grid also the interaction contrast.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable

from core.intervals import Interval, bootstrap_ci, mean_ci, student_t_cdf, student_t_quantile

ALPHA = 0.05
TIE_RULE = ("worse: significantly worse than some other configuration, by all k(k-1) one-sided Welch t-tests between "
            "the configurations with >= 2 seeds, Holm-corrected together (family-wise error <= 0.05, the choice of "
            "the best included; a pair whose seeds agree exactly on both sides is not tested, p = 1); p_worse: the "
            "smallest Holm-adjusted p; = tied with the best: not worse")
ONE_SEED_NOTE = ("not compared: 1 seed shows no seed variance, so no tie or worse claim is made (its interval, if "
                 "any, is the evaluation's own)")


@dataclass(frozen=True)
class RunValue:
    run_id: int
    config: tuple  # the values of the swept factors
    value: float
    per_unit: tuple = ()  # per-image (or per-subset) values, when the evaluation kept them
    stored_ci: tuple = (None, None)  # the interval the evaluation stored for this run


@dataclass(frozen=True)
class ConfigStats:
    config: tuple
    run_ids: tuple
    values: tuple  # one per seed
    interval: Interval
    ci_method: str
    tied: bool | None = None  # not significantly worse than any (the best is tied with itself); None: not compared
    p_worse: float | None = None  # Holm-adjusted p of "worse than some configuration"; None: not compared

    @property
    def compared(self) -> bool:
        """Whether the tie rule judged this configuration (it has at least 2 seeds)."""
        return self.tied is not None


def configuration_stats(runs: list[RunValue], seed: int = 0) -> ConfigStats:
    """Mean and 95% interval of one configuration's runs."""
    values = [r.value for r in runs]
    ids = tuple(r.run_id for r in runs)
    if len(runs) >= 2:
        return ConfigStats(runs[0].config, ids, tuple(values), mean_ci(values), f"t over {len(runs)} seeds")
    run = runs[0]
    if len(run.per_unit) >= 2:
        import numpy as np

        units = np.asarray(run.per_unit, dtype=np.float64)
        interval = bootstrap_ci(lambda rng: float(units[rng.integers(0, len(units), len(units))].mean()),
                                run.value, len(units), rounds=1000, seed=seed)
        return ConfigStats(run.config, ids, tuple(values), interval,
                           f"1 seed: bootstrap over its {len(units)} per-image values")
    low, high = run.stored_ci
    return ConfigStats(run.config, ids, tuple(values),
                       Interval(run.value, low if low is not None else run.value, high if high is not None else run.value,
                                1, "stored"), "1 seed: the evaluation's own interval")


def student_t_sf_elementwise(t, df):
    """P(T > t) elementwise over numpy arrays, with core.intervals' Student t (no scipy import)."""
    import numpy as np

    return np.vectorize(lambda x, d: student_t_cdf(-x, d), otypes=[float])(t, df)


def welch_worse_matrix(means, variances, counts, direction: str, t_sf: Callable = student_t_sf_elementwise):
    """One-sided Welch t-test p-values over the last axis (k configurations, any leading batch axes):
    entry [..., i, j] is the p-value of "i is worse than j". A pair where neither side varies has no
    test (p = 1); so has the diagonal. `t_sf(t, df)` is P(T > t), vectorised (scipy's t.sf fits)."""
    import numpy as np

    m = np.asarray(means, dtype=np.float64)
    v = np.asarray(variances, dtype=np.float64) / np.asarray(counts, dtype=np.float64)
    n = np.broadcast_to(np.asarray(counts, dtype=np.float64), m.shape)
    diff = m[..., :, None] - m[..., None, :]
    diff = diff if direction == "lower" else -diff
    se2 = v[..., :, None] + v[..., None, :]
    share = v ** 2 / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = se2 ** 2 / (share[..., :, None] + share[..., None, :])
        t = diff / np.sqrt(se2)
    testable = (se2 > 0) & np.isfinite(t) & np.isfinite(df)
    p = np.ones(t.shape)
    p[testable] = t_sf(t[testable], df[testable])
    return p


def welch_worse_p(best, other, direction: str) -> float:
    """One-sided Welch t-test p-value for 'other is worse than best' (larger when lower is better)."""
    samples = (best, other)
    p = welch_worse_matrix([statistics.fmean(x) for x in samples], [statistics.variance(x) for x in samples],
                           [len(x) for x in samples], direction)
    return float(p[1, 0])


def holm_adjusted(p_values):
    """Holm-Bonferroni step-down adjusted p-values over the last axis (reject where <= alpha): the
    r-th smallest p times (m - r + 1), made non-decreasing, capped at 1; a NaN p counts as 1."""
    import numpy as np

    p = np.nan_to_num(np.asarray(p_values, dtype=np.float64), nan=1.0)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    stepped = np.minimum(1.0, np.take_along_axis(p, order, axis=-1) * (m - np.arange(m)))
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, np.maximum.accumulate(stepped, axis=-1), axis=-1)
    return adjusted


def holm_rejections(p_values: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm-Bonferroni step-down: which hypotheses are rejected at family-wise level alpha."""
    return [bool(a <= alpha) for a in holm_adjusted(p_values)]


def worse_p_values(means, variances, counts, direction: str, t_sf: Callable = student_t_sf_elementwise):
    """The tie rule (TIE_RULE) for configurations with >= 2 seeds, over the last axis (k
    configurations, any leading batch axes, for simulations): per configuration, the smallest
    Holm-adjusted p over the k(k-1) one-sided Welch tests "i is worse than j"; <= ALPHA marks it worse."""
    import numpy as np

    raw = welch_worse_matrix(means, variances, counts, direction, t_sf)
    k = raw.shape[-1]
    rows, cols = np.nonzero(~np.eye(k, dtype=bool))
    adjusted = np.ones(raw.shape)
    adjusted[..., rows, cols] = holm_adjusted(raw[..., rows, cols])
    return adjusted.min(axis=-1)


def split_finite(runs: list[RunValue]) -> tuple[list[RunValue], list[RunValue]]:
    """The runs with a finite value, and those left out (NaN or infinite: a failed evaluation)."""
    finite = [r for r in runs if math.isfinite(r.value)]
    return finite, [r for r in runs if not math.isfinite(r.value)]


def rank_configurations(runs: list[RunValue], direction: str, seed: int = 0) -> list[ConfigStats]:
    """One ConfigStats per configuration: those with >= 2 seeds first, best first, marked by the tie
    rule (TIE_RULE); then the one-seed ones by their value, not compared. Runs with a non-finite
    value are left out (see split_finite)."""
    groups: dict[tuple, list[RunValue]] = {}
    for r in split_finite(runs)[0]:
        groups.setdefault(r.config, []).append(r)
    rows = [configuration_stats(g, seed) for g in groups.values()]
    sign = 1 if direction == "lower" else -1
    rows.sort(key=lambda s: (len(s.values) < 2, sign * s.interval.value))
    compared = [s for s in rows if len(s.values) >= 2]
    p_worse = worse_p_values([statistics.fmean(s.values) for s in compared],
                             [statistics.variance(s.values) for s in compared], [len(s.values) for s in compared],
                             direction) if len(compared) >= 2 else [1.0] * len(compared)
    out = [ConfigStats(s.config, s.run_ids, s.values, s.interval, s.ci_method, bool(p > ALPHA), float(p))
           for s, p in zip(compared, p_worse)]
    return out + [s for s in rows if len(s.values) < 2]


@dataclass(frozen=True)
class LevelEffect:
    factor: str
    level: object
    interval: Interval  # mean over the runs at this level, t-interval


def main_effects(runs: list[RunValue], factors: list[str]) -> list[LevelEffect]:
    """Mean per level of each factor over all runs at that level (the other factors and seeds)."""
    effects = []
    for i, factor in enumerate(factors):
        levels: dict = {}
        for r in runs:
            levels.setdefault(r.config[i], []).append(r.value)
        effects += [LevelEffect(factor, level, mean_ci(values)) for level, values in levels.items()]
    return effects


def interaction_2x2(rows: list[ConfigStats], factors: list[str]) -> Interval | None:
    """For a 2x2 grid with at least 2 seeds per cell: (m11 - m12) - (m21 - m22), with a Welch
    t-interval (standard error from the four cells' seed variances, Satterthwaite degrees of freedom)."""
    if len(factors) != 2:
        return None
    a_levels = sorted({r.config[0] for r in rows}, key=str)
    b_levels = sorted({r.config[1] for r in rows}, key=str)
    cells = {r.config: list(r.values) for r in rows}
    if len(a_levels) != 2 or len(b_levels) != 2 or len(cells) != 4 or min(len(v) for v in cells.values()) < 2:
        return None
    (a1, a2), (b1, b2) = a_levels, b_levels
    m = {k: statistics.fmean(v) for k, v in cells.items()}
    value = (m[(a1, b1)] - m[(a1, b2)]) - (m[(a2, b1)] - m[(a2, b2)])
    parts = [statistics.variance(v) / len(v) for v in cells.values()]
    se = math.sqrt(sum(parts))
    if se == 0:
        return None  # no seed varies: the Welch interval is undefined
    df = sum(parts) ** 2 / sum(p ** 2 / (len(v) - 1) for p, v in zip(parts, cells.values()))
    half = student_t_quantile(0.975, df) * se
    return Interval(float(value), float(value - half), float(value + half), sum(len(v) for v in cells.values()),
                    "Welch t")

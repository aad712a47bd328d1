"""Statistics of an ablation: each configuration's mean with a 95% interval, which configurations
are tied with the best, and the main effects of the factors.

- A configuration evaluated with several seeds: the mean over seeds and its Student-t interval.
- With one seed: that run's own uncertainty, the percentile bootstrap of its per-image values
  (or, for numbers without per-image values, the interval the evaluation stored), and it says so.
- Ties: each configuration is compared with the best by a one-sided Welch t-test (H1: it is worse),
  on seed values, or on per-image values where a side has one seed; the Holm-Bonferroni step-down
  correction keeps the family-wise error at 5%. Every configuration not significantly worse than
  the best is marked as tied with it.
- Main effects: per level of each factor, the mean over the runs at that level (all other factors
  and seeds), with its t-interval; for a 2x2 grid also the interaction contrast.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from core.stats import Interval, bootstrap_ci, mean_ci, student_t_cdf, student_t_quantile

# which way is better, per metric (training loss is never a rank key: its scale depends on the schedule)
DIRECTIONS = {"nll": "lower", "kid": "lower", "fid": "lower", "ssim_memorisation": "lower",
              "ssim_diversity": "lower", "class_fidelity": "higher"}
ALPHA = 0.05


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
    tied: bool = False  # not significantly worse than the best (the best is tied with itself)
    p_worse: float | None = None  # one-sided p-value against the best, before the correction


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


def welch_worse_p(best, other, direction: str) -> float:
    """One-sided Welch t-test p-value for 'other is worse than best' (larger when lower is better)."""
    vb, vo = statistics.variance(best) / len(best), statistics.variance(other) / len(other)
    se = math.sqrt(vb + vo)
    diff = statistics.fmean(other) - statistics.fmean(best)
    diff = diff if direction == "lower" else -diff
    if se == 0:
        return 0.0 if diff > 0 else 1.0
    df = (vb + vo) ** 2 / (vb ** 2 / (len(best) - 1) + vo ** 2 / (len(other) - 1))
    return student_t_cdf(-diff / se, df)


def holm_rejections(p_values: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm-Bonferroni step-down: which hypotheses are rejected at family-wise level alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def comparison_samples(stats: ConfigStats, runs: list[RunValue]) -> list[float] | None:
    """What a configuration contributes to a test: its seed values, or one run's per-unit values."""
    if len(stats.values) >= 2:
        return [float(v) for v in stats.values]
    units = runs[0].per_unit
    return [float(v) for v in units] if len(units) >= 2 else None


def rank_configurations(runs: list[RunValue], direction: str, seed: int = 0) -> list[ConfigStats]:
    """One ConfigStats per configuration, best first, with ties to the best marked (Holm-corrected
    one-sided Welch tests; a configuration with nothing to test is tied only if its interval
    overlaps the best's)."""
    groups: dict[tuple, list[RunValue]] = {}
    for r in runs:
        groups.setdefault(r.config, []).append(r)
    rows = [configuration_stats(g, seed) for g in groups.values()]
    sign = 1 if direction == "lower" else -1
    rows.sort(key=lambda s: sign * s.interval.value)
    best, others = rows[0], rows[1:]
    best_sample = comparison_samples(best, groups[best.config])
    p_values, untestable = [], []
    for row in others:
        sample = comparison_samples(row, groups[row.config])
        if best_sample is None or sample is None:
            untestable.append(row)
            p_values.append(1.0)
        else:
            p_values.append(welch_worse_p(best_sample, sample, direction))
    rejected = holm_rejections(p_values) if others else []
    out = [ConfigStats(best.config, best.run_ids, best.values, best.interval, best.ci_method, True, None)]
    for row, p, worse in zip(others, p_values, rejected):
        if row in untestable:
            overlap = row.interval.low <= best.interval.high if direction == "lower" else row.interval.high >= best.interval.low
            out.append(ConfigStats(row.config, row.run_ids, row.values, row.interval, row.ci_method, overlap, None))
        else:
            out.append(ConfigStats(row.config, row.run_ids, row.values, row.interval, row.ci_method, not worse, p))
    return out


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
    df = sum(parts) ** 2 / sum(p ** 2 / (len(v) - 1) for p, v in zip(parts, cells.values()))
    half = student_t_quantile(0.975, df) * se
    return Interval(float(value), float(value - half), float(value + half), sum(len(v) for v in cells.values()),
                    "Welch t")

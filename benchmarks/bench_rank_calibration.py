"""Calibration of rank's tie rule by simulation with known truth, and the README's worked example
re-ranked with it.

    .venv/bin/python benchmarks/bench_rank_calibration.py [--sweeps 20000]

1. For 2, 4, 8 configurations x 2, 3, 5 seeds x normal and skewed (standardised lognormal) seed
   values: the share of sweeps of equal configurations with any configuration marked worse (the
   family-wise error, to be <= 0.05), and with configuration 0 better by 2 seed-sds: how often it
   is the best, how often every other configuration is marked worse, and the share of the others
   marked worse (the power). A Markdown table on stdout.
2. The README's 2x2 example (3 seeds per configuration) re-ranked from its printed means and 95%
   t-intervals: the Welch tests need only each configuration's mean, sd and count, and the sd
   follows from the interval's half-width (s = half * sqrt(3) / t_{0.975, 2}).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.rank.calibration import DISTRIBUTIONS, calibrate, seed_values  # noqa: E402
from core.intervals import student_t_quantile  # noqa: E402
from core.rank.significance import (ALPHA, holm_adjusted, student_t_sf_elementwise, welch_worse_matrix,  # noqa: E402
                                    worse_p_values)

# the README's worked example: configuration -> (mean, CI low, CI high), 3 seeds each
README_EXAMPLE = {
    "nll": {"full cosine": (3.279, 3.203, 3.354), "none cosine": (3.294, 3.229, 3.359),
            "full linear": (3.523, 3.384, 3.663), "none linear": (3.548, 3.308, 3.788)},
    "kid": {"full cosine": (1.574, 1.289, 1.858), "none cosine": (1.414, 0.4492, 2.378),
            "full linear": (1.51, 0.5318, 2.489), "none linear": (1.869, 0.5658, 3.173)},
}


def old_rule_type_i(configs: int, seeds: int, distribution: str, sweeps: int, seed: int, t_sf) -> float:
    """The rule before issue 18, for comparison: the best by mean, each other tested one-sided
    against it (Welch), Holm over the k-1 tests; the share of equal sweeps with a worse mark."""
    import numpy as np

    values = seed_values(np.random.default_rng(seed), sweeps, configs, seeds, distribution)
    means, variances = values.mean(-1), values.var(-1, ddof=1)
    raw = welch_worse_matrix(means, variances, np.full(means.shape, seeds), "lower", t_sf)
    best = means.argmin(-1)
    against_best = np.take_along_axis(raw, best[:, None, None], axis=-1)[..., 0]  # p of "i worse than the best"
    others = np.where(np.arange(configs) == best[:, None], np.nan, against_best)
    kept = np.sort(others, axis=-1)[:, : configs - 1]  # the NaN of the best sorts last
    return float((holm_adjusted(kept) <= ALPHA).any(-1).mean())


def calibration_table(sweeps: int, t_sf) -> list[str]:
    """The Markdown table of type-I error and power per setting."""
    lines = ["| configs | seeds | values | type-I error (any worse, all equal) | old rule's | best found | "
             "all others worse | others marked worse |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for configs in (2, 4, 8):
        for seeds in (2, 3, 5):
            for distribution in DISTRIBUTIONS:
                null = calibrate(configs, seeds, distribution, 0.0, sweeps, seed=1000 * configs + seeds, t_sf=t_sf)
                power = calibrate(configs, seeds, distribution, 2.0, sweeps, seed=2000 * configs + seeds, t_sf=t_sf)
                error = math.sqrt(null.any_worse * (1 - null.any_worse) / sweeps)
                old = old_rule_type_i(configs, seeds, distribution, sweeps, 1000 * configs + seeds, t_sf)
                lines.append(f"| {configs} | {seeds} | {distribution} | {null.any_worse:.4f} +- {error:.4f} | "
                             f"{old:.4f} | {power.found:.3f} | {power.all_others_worse:.3f} | "
                             f"{power.others_worse:.3f} |")
    return lines


def readme_example() -> list[str]:
    """The README's configurations with their p_worse and mark under the tie rule."""
    lines = []
    t = student_t_quantile(0.975, 2)
    for metric, rows in README_EXAMPLE.items():
        names = list(rows)
        means = [rows[n][0] for n in names]
        variances = [((rows[n][2] - rows[n][1]) / 2 * math.sqrt(3) / t) ** 2 for n in names]
        p = worse_p_values(means, variances, [3] * len(names), "lower")
        best = min(range(len(names)), key=lambda i: means[i])
        for i, name in enumerate(names):
            mark = "=best" if i == best else ("=" if p[i] > ALPHA else "worse")
            lines.append(f"{metric}  {name:<12} {means[i]:<6} p_worse {p[i]:.3g}  {mark}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=20_000)
    args = parser.parse_args()
    try:
        from scipy.stats import t

        t_sf = t.sf
    except ImportError:  # the rule's own Student t: the same numbers, slower
        t_sf = student_t_sf_elementwise
    print("\n".join(calibration_table(args.sweeps, t_sf)))
    print()
    print("\n".join(readme_example()))


if __name__ == "__main__":
    main()

"""The tie rule against known truth (issue 18): with all configurations equal, the share of sweeps
with any "worse" mark stays within 5% (the old rule, best by mean then Holm against it, gave
7.4-8.6%); with one configuration better by 2 seed-sds it is found, and the others are marked worse
as often as the seeds allow. Its numbers agree with scipy."""

import math

import numpy as np
import pytest
from scipy.stats import t, ttest_ind

from core.rank.calibration import calibrate
from core.rank.significance import ALPHA, holm_adjusted, welch_worse_matrix, welch_worse_p, worse_p_values

SWEEPS = 10_000
SETTINGS = [(k, n, d) for k in (2, 4, 8) for n in (2, 3, 5) for d in ("normal", "skewed")]


@pytest.mark.parametrize("configs,seeds,distribution", SETTINGS)
def test_equal_configurations_are_marked_worse_in_at_most_5_percent_of_sweeps(configs, seeds, distribution):
    result = calibrate(configs, seeds, distribution, 0.0, SWEEPS, seed=configs * 100 + seeds, t_sf=t.sf)
    monte_carlo_error = math.sqrt(ALPHA * (1 - ALPHA) / SWEEPS)
    assert result.any_worse <= ALPHA + 3 * monte_carlo_error, result


# measured with benchmarks/bench_rank_calibration.py (20,000 sweeps): the floors sit well below
@pytest.mark.parametrize("configs,seeds,found,all_worse", [(2, 5, 0.99, 0.65), (2, 3, 0.97, 0.3), (4, 5, 0.97, 0.1),
                                                           (8, 5, 0.97, 0.0)])
def test_a_configuration_better_by_two_seed_sds_is_found_and_the_others_marked_worse(configs, seeds, found,
                                                                                     all_worse):
    result = calibrate(configs, seeds, "normal", 2.0, SWEEPS, seed=7, t_sf=t.sf)
    assert result.found >= found and result.all_others_worse >= all_worse, result
    assert result.any_worse > 0.05 or configs == 8  # it has power beyond its error rate


def test_power_grows_with_seeds():
    power = [calibrate(4, n, "normal", 2.0, SWEEPS, seed=3, t_sf=t.sf).others_worse for n in (2, 3, 5)]
    assert power[0] < power[1] < power[2], power


def test_welch_p_values_match_scipy_one_sided():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.normal(0, rng.uniform(0.5, 2), rng.integers(2, 7)), rng.normal(0.5, 1, rng.integers(2, 7))
        expected = ttest_ind(b, a, equal_var=False, alternative="greater").pvalue  # b worse (larger) than a
        assert welch_worse_p(a, b, "lower") == pytest.approx(expected, rel=1e-8)
        assert welch_worse_p(-a, -b, "higher") == pytest.approx(expected, rel=1e-8)


def test_the_rule_without_scipy_equals_the_rule_with_scipy():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(5, 4, 3))
    values[:, 0] -= 1.5
    means, variances = values.mean(-1), values.var(-1, ddof=1)
    ours = worse_p_values(means, variances, np.full(means.shape, 3), "lower")
    assert ours == pytest.approx(worse_p_values(means, variances, np.full(means.shape, 3), "lower", t.sf), rel=1e-8)


def test_holm_adjusted_by_hand_and_nan_is_never_rejected():
    # sorted 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> kept non-decreasing: 0.06
    assert list(holm_adjusted([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    assert list(holm_adjusted([0.001, float("nan"), 0.02])) == pytest.approx([0.003, 1.0, 0.04])


def test_two_configurations_p_worse_is_the_two_sided_welch_p():
    a, b = np.array([1.0, 1.2, 0.9]), np.array([2.0, 2.6, 1.9])
    p = worse_p_values([a.mean(), b.mean()], [a.var(ddof=1), b.var(ddof=1)], [3, 3], "lower")
    assert p[1] == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue, rel=1e-8)  # Holm over 2: 2 x one-sided
    assert p[0] > 0.5  # the best is never worse: its one-sided p is above 1/2 before the correction


def test_zero_variance_on_both_sides_is_no_test():
    p = welch_worse_matrix([1.0, 2.0], [0.0, 0.0], [3, 3], "lower")
    assert p[1, 0] == 1.0 and p[0, 1] == 1.0
    one_side = welch_worse_matrix([1.0, 2.0], [0.0, 0.09], [3, 3], "lower")
    assert one_side[1, 0] == pytest.approx(t.sf(1 / math.sqrt(0.03), 2), rel=1e-8)  # Welch df = 2 from one side

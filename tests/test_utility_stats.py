"""The utility metric's intervals, checked by simulation with known truth (binormal scores, whose
AUC is Phi(d / sqrt(2))): coverage of the AUC, ratio and difference intervals, and the type-I error
of "augmenting helps" when it does not."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from core.evaluate.classifier import roc_auc
from core.evaluate.utility import (auc_covariance, auc_difference_interval, auc_interval, auc_ratio_interval,
                                   balanced_indices, placement_values)

REPS = 800
# 95% intervals: the observed coverage of REPS draws lies within about 3 standard errors of 0.95
LOW, HIGH = 0.95 - 3 * math.sqrt(0.95 * 0.05 / REPS), 0.95 + 3 * math.sqrt(0.95 * 0.05 / REPS)


def binormal_scores(rng, labels, separations, correlation):
    """Scores of len(separations) classifiers: label * d + noise, the noises correlated."""
    k = len(separations)
    cov = np.full((k, k), correlation) + (1 - correlation) * np.eye(k)
    noise = rng.multivariate_normal(np.zeros(k), cov, size=len(labels))
    return [labels * d + noise[:, i] for i, d in enumerate(separations)]


def true_auc(d):
    return norm.cdf(d / math.sqrt(2))


def test_placement_values_give_the_mann_whitney_auc_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + labels, 1)  # many ties
    auc, v10, v01 = placement_values(scores, labels)
    assert auc == pytest.approx(roc_auc(scores, labels))
    assert v10.mean() == pytest.approx(v01.mean())
    brute = np.mean([[1.0 if p > q else 0.5 if p == q else 0.0 for q in scores[labels == 0]]
                     for p in scores[labels == 1]], axis=1)
    np.testing.assert_allclose(v10, brute)


def test_delong_variance_matches_the_spread_of_simulated_aucs():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 150)
    aucs, variances = [], []
    for _ in range(400):
        (scores,) = binormal_scores(rng, labels, [1.0], 0.0)
        a, v = auc_covariance([scores], labels)
        aucs.append(a[0])
        variances.append(v[0, 0])
    assert np.mean(variances) == pytest.approx(np.var(aucs), rel=0.2)


@pytest.mark.parametrize("separation,per_class", [(1.0, 100), (2.5, 60), (0.3, 200)])
def test_auc_interval_covers_the_true_auc(separation, per_class):
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], per_class)
    truth = true_auc(separation)
    hits = 0
    for _ in range(REPS):
        (scores,) = binormal_scores(rng, labels, [separation], 0.0)
        c = auc_interval(scores, labels)
        hits += c.low <= truth <= c.high
        assert 0 <= c.low <= c.value <= c.high <= 1
    assert LOW <= hits / REPS <= HIGH


@pytest.mark.parametrize("separations,correlation", [((0.6, 1.2), 0.5), ((1.0, 1.0), 0.8)])
def test_ratio_interval_covers_the_true_ratio_of_correlated_aucs(separations, correlation):
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 150)
    truth = true_auc(separations[0]) / true_auc(separations[1])
    hits = 0
    for _ in range(REPS):
        first, second = binormal_scores(rng, labels, separations, correlation)
        c = auc_ratio_interval(first, second, labels)
        hits += c.low <= truth <= c.high
    assert LOW <= hits / REPS <= HIGH


def test_difference_interval_keeps_its_type_one_error_and_has_power():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], 150)
    false_gains = sum(auc_difference_interval(*binormal_scores(rng, labels, (1.0, 1.0), 0.6), labels).low > 0
                      for _ in range(REPS))
    assert false_gains / REPS <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / REPS)  # one side of a 95% interval
    true_gains = sum(auc_difference_interval(*binormal_scores(rng, labels, (1.6, 1.0), 0.6), labels).low > 0
                     for _ in range(200))
    assert true_gains / 200 > 0.8


def test_balanced_indices_take_half_of_each_class_without_repeats():
    labels = np.array([0] * 50 + [1] * 30)
    chosen = balanced_indices(labels, 41, seed=0)
    assert len(set(chosen)) == 41
    assert (labels[chosen] == 1).sum() == 21 and (labels[chosen] == 0).sum() == 20
    with pytest.raises(ValueError, match="only 30"):
        balanced_indices(labels, 70, seed=0)

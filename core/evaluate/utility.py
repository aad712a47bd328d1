"""What a run's samples are worth as training data (`eval --metrics utility`).

Train on synthetic, test on real (TSTR; Esteban et al. 2017): the project's PCam classifier
(core.evaluate.classifier) is trained on N labelled samples of a conditional run and, beside it,
on N real training patches (TRTR), the same steps and seed; both are tested on the same real
held-out patches. `utility` is the ratio of their ROC AUCs (1: the samples teach as much as as many
real patches). With `augment`, a third classifier learns from the N real plus the N synthetic
patches, and `augment_auc_gain` is its AUC minus TRTR's.

Intervals come from DeLong's covariance of correlated AUCs on one test set (DeLong et al. 1988):
they cover the test patches' sampling, not the randomness of training the classifiers (ranking
over seeds covers that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from core.intervals import Interval, wilson_ci

Z95 = float(norm.ppf(0.975))

def placement_values(scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(AUC, V10, V01): the AUC and DeLong's structural components, the fraction of negatives each
    positive outscores (V10, one per positive) and of positives that outscore each negative (V01),
    ties counting half; computed from midranks (Sun & Xu 2014) in O(n log n)."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = scores[labels], scores[~labels]
    m, n = len(positives), len(negatives)
    overall = rankdata(np.concatenate([positives, negatives]))
    within_pos, within_neg = rankdata(positives), rankdata(negatives)
    v10 = (overall[:m] - within_pos) / n
    v01 = 1.0 - (overall[m:] - within_neg) / m
    return float(v10.mean()), v10, v01


def auc_covariance(score_sets: list[np.ndarray], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUCs (k,), covariance (k, k)) of k classifiers' scores on the same labelled patches:
    S10/m + S01/n, the covariances of the structural components over positives and negatives
    (DeLong et al. 1988, eq. 2-5)."""
    parts = [placement_values(np.asarray(s, np.float64), labels) for s in score_sets]
    aucs = np.array([p[0] for p in parts])
    v10, v01 = np.stack([p[1] for p in parts]), np.stack([p[2] for p in parts])
    covariance = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return aucs, covariance


def auc_interval(scores: np.ndarray, labels: np.ndarray) -> Interval:
    """AUC with its 95% interval, normal on the logit scale (stays inside (0, 1) near the ends)."""
    aucs, covariance = auc_covariance([scores], labels)
    auc = float(aucs[0])
    if auc in (0.0, 1.0):
        return Interval(auc, auc, auc, len(scores), "delong-logit")
    logit_se = math.sqrt(covariance[0, 0]) / (auc * (1 - auc))
    centre = math.log(auc / (1 - auc))
    low, high = (1 / (1 + math.exp(-(centre + side * Z95 * logit_se))) for side in (-1, 1))
    return Interval(auc, low, high, len(scores), "delong-logit")


def auc_ratio_interval(numerator: np.ndarray, denominator: np.ndarray, labels: np.ndarray) -> Interval:
    """AUC(numerator) / AUC(denominator) of two classifiers scored on the same patches, with a 95%
    interval from the delta method on the log ratio: var = v11/a1^2 + v22/a2^2 - 2 v12/(a1 a2)."""
    (a1, a2), v = auc_covariance([numerator, denominator], labels)
    ratio = a1 / a2
    log_se = math.sqrt(max(v[0, 0] / a1**2 + v[1, 1] / a2**2 - 2 * v[0, 1] / (a1 * a2), 0.0))
    return Interval(float(ratio), float(ratio * math.exp(-Z95 * log_se)), float(ratio * math.exp(Z95 * log_se)),
                    len(labels), "delong-log-ratio")


def auc_difference_interval(first: np.ndarray, second: np.ndarray, labels: np.ndarray) -> Interval:
    """AUC(first) - AUC(second) on the same patches, with DeLong's 95% interval."""
    (a1, a2), v = auc_covariance([first, second], labels)
    se = math.sqrt(max(v[0, 0] + v[1, 1] - 2 * v[0, 1], 0.0))
    return Interval(float(a1 - a2), float(a1 - a2 - Z95 * se), float(a1 - a2 + Z95 * se), len(labels), "delong")


def balanced_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n indices, half of each class (the odd one a cancerous patch), drawn without replacement."""
    rng = np.random.default_rng([seed, 11])
    wanted = {1: n - n // 2, 0: n // 2}
    chosen = []
    for label, count in wanted.items():
        members = np.flatnonzero(labels == label)
        if len(members) < count:
            raise ValueError(f"only {len(members)} training patches of label {label}, {count} needed")
        chosen.append(rng.choice(members, count, replace=False))
    return np.sort(np.concatenate(chosen))


TEST_LIMIT = 4096  # real held-out patches the classifiers are tested on


@dataclass(frozen=True)
class UtilityRow:
    metric: str
    interval: Interval
    details: dict


def utility_rows(synthetic: np.ndarray, synthetic_labels: np.ndarray, real: np.ndarray, real_labels: np.ndarray,
                 test: np.ndarray, test_labels: np.ndarray, steps: int, seed: int, device, augment: bool = False,
                 on_classifier=None) -> list[UtilityRow]:
    """Train the TSTR and TRTR classifiers (and with `augment` the real+synthetic one) on uint8
    (n, S, S, 3) patches at their own resolution, test all on the same real patches, and return
    the utility numbers with their intervals."""
    from core.data.sources import ArraySource
    from core.evaluate.classifier import fit_classifier, score

    sets = {"synthetic": (synthetic, synthetic_labels), "real": (real, real_labels)}
    if augment:
        sets["real+synthetic"] = (np.concatenate([real, synthetic]), np.concatenate([real_labels, synthetic_labels]))
    size = test.shape[1]
    probs, accuracy = {}, {}
    for done, (name, (images, labels)) in enumerate(sets.items()):
        source = ArraySource(images, labels, f"{name} training patches")
        model = fit_classifier(source, np.arange(len(images)), size, "center-crop", steps, seed=seed, device=device)
        accuracy[name], _, probs[name] = score(model, test, test_labels)
        if on_classifier:
            on_classifier(done + 1, len(sets))
    correct = {name: int(round(accuracy[name] * len(test))) for name in sets}
    common = {"n_synthetic": len(synthetic), "n_real": len(real), "n_test": len(test), "classifier_steps": steps,
              "ci": "DeLong over the test patches; the classifiers' training randomness is not included"}
    tstr, trtr = auc_interval(probs["synthetic"], test_labels), auc_interval(probs["real"], test_labels)
    ratio = auc_ratio_interval(probs["synthetic"], probs["real"], test_labels)
    rows = [
        UtilityRow("utility", ratio, {**common, "what": "TSTR AUC / TRTR AUC: a classifier trained on N samples "
                                      "against one trained on N real patches, both tested on real held-out patches",
                                      "tstr_auc": tstr.value, "trtr_auc": trtr.value,
                                      "tstr_accuracy": accuracy["synthetic"], "trtr_accuracy": accuracy["real"]}),
        UtilityRow("tstr_auc", tstr, {**common, "what": "ROC AUC on real patches of a classifier trained on samples"}),
        UtilityRow("trtr_auc", trtr, {**common, "what": "ROC AUC on real patches of a classifier trained on as "
                                      "many real training patches"}),
    ]
    for name, metric in (("synthetic", "tstr_accuracy"), ("real", "trtr_accuracy")):
        rows.append(UtilityRow(metric, wilson_ci(correct[name], len(test)), {**common, "what": "accuracy at 0.5"}))
    if augment:
        gain = auc_difference_interval(probs["real+synthetic"], probs["real"], test_labels)
        rows.append(UtilityRow("augment_auc_gain", gain, {
            **common, "what": "AUC of a classifier trained on N real + N synthetic patches minus that of one "
                              "trained on the N real alone", "augmented_accuracy": accuracy["real+synthetic"]}))
    return rows

"""Distances between generated and real image sets in a feature space (core.evaluate.classifier's).

- KID (Binkowski et al. 2018): the unbiased estimator of the squared maximum mean discrepancy with
  the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over disjoint subsets; being
  unbiased, it is usable at small n, and disjoint subsets give an honest t-interval.
- FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two feature sets,
  ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)); biased upwards at small n, so its interval is
  a bootstrap.

Measured in a PCam classifier's features, neither is comparable with Inception-feature numbers.
"""

from __future__ import annotations

import numpy as np

from core.stats import Interval, bootstrap_ci, mean_ci


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all pairs of rows."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, Eq. 3) of two equal-size samples: the means of the
    off-diagonal within-set kernels minus twice the mean cross kernel."""
    m = len(x)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.mean())


def kid(generated: np.ndarray, real: np.ndarray, subset_size: int = 50, seed: int = 0) -> tuple[Interval, np.ndarray]:
    """KID as the mean of MMD^2_u over disjoint subsets of both sets (n // subset_size of them, but at
    least 4 of 16 images where n allows), with the t-interval over those independent subsets.
    Returns (interval, per-subset values)."""
    n = min(len(generated), len(real))
    subsets = max(min(4, n // 16), n // subset_size, 2)  # a t-interval needs a few subsets
    size = n // subsets
    if size < 2:
        raise ValueError(f"KID needs at least 4 images per set, got {n}")
    rng = np.random.default_rng(seed)
    g, r = rng.permutation(len(generated))[:subsets * size], rng.permutation(len(real))[:subsets * size]
    values = np.array([mmd2_unbiased(generated[g[i * size:(i + 1) * size]], real[r[i * size:(i + 1) * size]])
                       for i in range(subsets)])
    return mean_ci(values), values


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 sqrtm(S_x S_y)) of Gaussians fitted to the rows."""
    from scipy.linalg import sqrtm

    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = sqrtm(s_x @ s_y)
    if np.iscomplexobj(root):  # numerical noise on a near-singular product
        root = root.real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x + s_y - 2 * root))


def fid(generated: np.ndarray, real: np.ndarray, rounds: int = 100, seed: int = 0) -> Interval:
    """FID with a percentile bootstrap interval (both sets resampled with replacement)."""
    value = frechet_distance(generated, real)

    def resample(rng):
        return frechet_distance(generated[rng.integers(0, len(generated), len(generated))],
                                real[rng.integers(0, len(real), len(real))])

    return bootstrap_ci(resample, value, min(len(generated), len(real)), rounds, seed)

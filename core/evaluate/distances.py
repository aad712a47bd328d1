"""Distances between generated and real image sets in a feature space (core.evaluate.classifier's).

- KID (Binkowski et al. 2018): the unbiased estimator of the squared maximum mean discrepancy with
  the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over disjoint subsets; being
  unbiased, it is usable at small n, and disjoint subsets give an honest t-interval.
- FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two feature sets,
  ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), computed as pytorch-fid does. It is biased
  upwards at small n and comes without an interval: a bootstrap resamples with replacement, which
  duplicates rows, makes the covariances more degenerate and raises FID, so its interval lies above
  the estimate (coverage 0.00-0.04 in simulation). Beside it, FID-infinity (Chong & Forsyth 2020):
  FID at several subset sizes N, fitted linearly in 1/N and extrapolated to 1/N = 0, which removes
  the 1/N bias. Intervals over seeds come from `rank`; KID is the unbiased distance to rank by.

Measured in a PCam classifier's features, neither is comparable with Inception-feature numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.intervals import Interval, mean_ci

SQRTM_EPS = 1e-6  # pytorch-fid's offset for a singular covariance product
IMAGINARY_TOLERANCE = 1e-3  # relative to the trace; pytorch-fid raises above 1e-3 too
MIN_EXTRAPOLATION = 64  # images per set below which FID-infinity's smallest subsets are too degenerate


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


class FrechetError(ValueError):
    """The matrix square root of FID could not be computed honestly."""


def covariance_root_trace(s_x: np.ndarray, s_y: np.ndarray) -> float:
    """Tr((S_x S_y)^(1/2)). A singular product (fewer images than features, or collinear features)
    has no stable root: then, as pytorch-fid does, both covariances get SQRTM_EPS * I added. An
    imaginary part larger than IMAGINARY_TOLERANCE of the trace is an error, not noise to drop."""
    from scipy.linalg import sqrtm

    product = s_x @ s_y
    root = sqrtm(product)
    singular = np.linalg.matrix_rank(product) < len(product)
    if singular or not np.isfinite(root).all():
        offset = SQRTM_EPS * np.eye(len(s_x))
        root = sqrtm((s_x + offset) @ (s_y + offset))
    if not np.isfinite(root).all():
        raise FrechetError("FID: the covariance product has no finite square root")
    trace = np.trace(root)
    if np.iscomplexobj(root):
        imaginary = float(np.abs(root.imag).max())
        if imaginary > IMAGINARY_TOLERANCE * max(1.0, abs(float(trace.real))):
            raise FrechetError(f"FID: the covariance square root has an imaginary part of {imaginary:.3g}")
        trace = trace.real
    return float(trace)


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 sqrtm(S_x S_y)) of Gaussians fitted to the rows."""
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x) + np.trace(s_y) - 2 * covariance_root_trace(s_x, s_y))


@dataclass(frozen=True)
class FID:
    value: float  # FID of the two whole sets
    infinity: float | None  # FID-infinity, the extrapolation to infinitely many images (None: n too small)
    sizes: tuple  # the subset sizes N of the extrapolation
    at_size: tuple  # FID at each of them


def fid(generated: np.ndarray, real: np.ndarray, points: int = 8, seed: int = 0) -> FID:
    """FID of the two sets, and FID-infinity (Chong & Forsyth 2020): FID of random subsets of both
    sets at `points` sizes from n/4 to n, a least-squares line in 1/N, its value at 1/N = 0."""
    value = frechet_distance(generated, real)
    n = min(len(generated), len(real))
    sizes = tuple(sorted({int(round(s)) for s in np.linspace(n / 4, n, points)}))
    if n < MIN_EXTRAPOLATION:
        return FID(value, None, (), ())
    rng = np.random.default_rng(seed)
    at_size = tuple(frechet_distance(generated[rng.choice(len(generated), size, replace=False)],
                                     real[rng.choice(len(real), size, replace=False)]) for size in sizes)
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes), np.asarray(at_size), 1)
    return FID(value, float(intercept), sizes, at_size)

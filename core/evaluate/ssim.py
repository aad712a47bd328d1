"""SSIM (Wang et al. 2004) for the two questions it can answer about generated patches.

- Memorisation: for each generated image, its highest SSIM against the training set under the 8
  dihedral transforms training augments with (a rotated copy is a copy). A copy of a training patch
  is a copy of a patient's tissue. SSIM is only computed for the k (patch, transform) pairs nearest
  in a cheap embedding (8x8 colour thumbnails), found by one streaming pass over the set. Near-blank
  generated patches (background without tissue) are never counted as copies. It is a guard: a
  model is flagged when samples reach the threshold, it is not ranked by it.
- Diversity: the mean SSIM between pairs of generated images against the same for real held-out
  images, as the distance between the two: a collapsed model makes near-identical patches (too high),
  noise has no shared structure (too low); a good model matches the real data's own diversity.

Every SSIM compares one pair of images at the training resolution, with an explicit data range and
colour channel axis (skimage.metrics.structural_similarity), computed as Wang et al. 2004 define it
(IEEE TIP 13(4), Sec. III-B): an 11x11 Gaussian window of sigma 1.5 and population (not sample)
covariances, rather than scikit-image's default 7x7 uniform window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

THUMB = 8
BLANK_SD = 10.0  # grey levels (0-255); tissue patches vary by tens


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 (S, S, 3) images, averaged over the colour channels: Wang et al.'s Gaussian
    window (sigma 1.5, truncated at 3.5 sigma: 11x11) with population covariances."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def thumbnails(images: np.ndarray) -> np.ndarray:
    """(n, 8*8*3) float32: each uint8 (S, S, 3) image averaged over (S/8)^2 blocks."""
    n, s = images.shape[:2]
    f = s // THUMB
    blocks = images[:, :f * THUMB, :f * THUMB].reshape(n, THUMB, f, THUMB, f, 3).astype(np.float32)
    return blocks.mean(axis=(2, 4)).reshape(n, -1)


def dihedral(images: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 symmetries of the square applied to (..., S, S, C) images, as training's
    augmentation numbers them (core.data.transforms.dihedral): rotate by 90*(code % 4) degrees
    counterclockwise, then mirror left-right when code >= 4."""
    turned = np.rot90(images, code % 4, axes=(-3, -2))
    return np.flip(turned, axis=-2) if code >= 4 else turned


def near_blank(image: np.ndarray) -> bool:
    """A background patch with no tissue: its luminance varies by less than BLANK_SD grey levels.
    SSIM between two such patches is high whatever they are (two different near-white patches,
    mean 226 and sd 3, score 0.953), so a match between them says nothing about memorisation."""
    luminance = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return bool(luminance.std() < BLANK_SD)


def nearest_candidates(generated: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) indices of the training patches whose thumbnails, under any of the 8 dihedral
    transforms (training augments with them), are nearest each generated image, and (n, k) the
    transform codes; `batches` yields (indices, uint8 images) covering the training set once."""
    query = thumbnails(generated)
    best_d = np.full((len(query), 0), np.inf, np.float32)
    best_i = np.zeros((len(query), 0), np.int64)
    best_c = np.zeros((len(query), 0), np.int64)
    for indices, images in batches:
        small = thumbnails(images).reshape(len(images), THUMB, THUMB, 3)
        keys = np.concatenate([dihedral(small, code).reshape(len(images), -1) for code in range(8)])
        d = (query ** 2).sum(1)[:, None] - 2 * query @ keys.T + (keys ** 2).sum(1)[None, :]
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(np.tile(indices, 8), d.shape)], axis=1)
        all_c = np.concatenate([best_c, np.broadcast_to(np.repeat(np.arange(8), len(images)), d.shape)], axis=1)
        keep = np.argsort(all_d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(all_d, keep, 1), np.take_along_axis(all_i, keep, 1)
        best_c = np.take_along_axis(all_c, keep, 1)
    return best_i, best_c


@dataclass(frozen=True)
class Memorisation:
    max_ssim: np.ndarray  # (n,) the highest SSIM of each generated image against the training set
    nearest: np.ndarray  # (n,) index (in the training split) of that patch
    transform: np.ndarray  # (n,) the dihedral code of that patch that matched
    blank: np.ndarray  # (n,) bool: the generated image is near-blank, never counted as a copy
    threshold: float

    @property
    def flagged(self) -> np.ndarray:
        """(n,) bool: copies of a training patch (at or above the threshold, not near-blank)."""
        return (self.max_ssim >= self.threshold) & ~self.blank

    @property
    def copies(self) -> int:
        return int(self.flagged.sum())


def memorisation(generated: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                 read: Callable[[int], np.ndarray], k: int = 16, threshold: float = 0.9) -> Memorisation:
    """Highest SSIM of each generated image against its k nearest (training patch, dihedral
    transform) candidates; `read(i)` gives training patch i as the run sees it."""
    candidates, codes = nearest_candidates(generated, batches, k)
    cache: dict[int, np.ndarray] = {}
    best = np.zeros(len(generated))
    nearest, transform = np.zeros(len(generated), np.int64), np.zeros(len(generated), np.int64)
    for g, (row, row_codes) in enumerate(zip(candidates.tolist(), codes.tolist())):
        scores = []
        for i, code in zip(row, row_codes):
            if i not in cache:
                cache[i] = read(i)
            scores.append(ssim(generated[g], dihedral(cache[i], code)))
        j = int(np.argmax(scores))
        best[g], nearest[g], transform[g] = scores[j], row[j], row_codes[j]
    blank = np.array([near_blank(image) for image in generated], dtype=bool)
    return Memorisation(best, nearest, transform, blank, threshold)


def pairwise_matrix(images: np.ndarray, max_images: int = 64, seed: int = 0) -> np.ndarray:
    """(m, m) symmetric SSIM of every pair of a seeded random subset of m = min(n, max_images)
    images (the diagonal is 1). All pairs of a subset, not random pairs of all images: a complete
    U-statistic, whose variance the jackknife estimates. Random, because held-out patches come in
    file order, which may follow the slides they were cut from."""
    m = min(len(images), max_images)
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), m, replace=False))
    matrix = np.eye(m)
    for a in range(m):
        for b in range(a + 1, m):
            matrix[a, b] = matrix[b, a] = ssim(images[chosen[a]], images[chosen[b]])
    return matrix


@dataclass(frozen=True)
class PairMean:
    value: float  # the mean SSIM over distinct pairs (a U-statistic of order 2)
    se: float  # its jackknife standard error (each image removed in turn, with all its pairs)
    images: int


def pair_mean(matrix: np.ndarray) -> PairMean:
    """Mean off-diagonal entry of a symmetric (m, m) matrix and its jackknife standard error. The
    pairs share images, so a per-image mean's t-interval is too narrow (it covered 0.68-0.84); leaving
    out whole images accounts for the sharing (Arvesen 1969: the jackknife of a U-statistic)."""
    m = len(matrix)
    if m < 3:
        raise ValueError(f"diversity needs at least 3 images, got {m}")
    off = matrix - np.diag(np.diag(matrix))
    total = off.sum() / 2
    pairs = m * (m - 1) / 2
    leave_one_out = (total - off.sum(axis=1)) / ((m - 1) * (m - 2) / 2)
    variance = (m - 1) / m * ((leave_one_out - leave_one_out.mean()) ** 2).sum()
    return PairMean(float(total / pairs), float(np.sqrt(variance)), m)


@dataclass(frozen=True)
class Diversity:
    """How far generated images' mean pairwise SSIM is from real held-out images' own."""

    generated: PairMean
    real: PairMean
    difference_ci: tuple  # 95% interval of generated - real
    distance: float  # |generated - real|: 0 is the real data's own diversity
    distance_ci: tuple  # 95% interval of |generated - real|, the image of difference_ci under |.|


def diversity(generated: np.ndarray, real: np.ndarray) -> Diversity:
    """Distance of the generated pairwise SSIM to the real one from (m, m) SSIM matrices of two
    independent sets, with a normal interval on the difference (jackknife variances added)."""
    from core.intervals import student_t_quantile

    g, r = pair_mean(generated), pair_mean(real)
    difference = g.value - r.value
    half = student_t_quantile(0.975, min(g.images, r.images) - 1) * float(np.hypot(g.se, r.se))
    low, high = difference - half, difference + half
    nearest = 0.0 if low <= 0 <= high else min(abs(low), abs(high))
    return Diversity(g, r, (low, high), abs(difference), (nearest, max(abs(low), abs(high))))

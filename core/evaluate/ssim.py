"""SSIM (Wang et al. 2004) for the two questions it can answer about generated patches.

- Memorisation: for each generated image, its highest SSIM against the training set. A copy of a
  training patch is a copy of a patient's tissue. SSIM is only computed for the k training patches
  nearest in a cheap embedding (8x8 colour thumbnails), found by one streaming pass over the set.
- Diversity: the mean SSIM between pairs of generated images, beside the same for real held-out
  images; a collapsed model makes near-identical patches.

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


def nearest_candidates(generated: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    """(n, k) indices of the training patches whose thumbnails are nearest each generated image;
    `batches` yields (indices, uint8 images) covering the training set once."""
    query = thumbnails(generated)
    best_d = np.full((len(query), 0), np.inf, np.float32)
    best_i = np.zeros((len(query), 0), np.int64)
    for indices, images in batches:
        keys = thumbnails(images)
        d = (query ** 2).sum(1)[:, None] - 2 * query @ keys.T + (keys ** 2).sum(1)[None, :]
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(indices, d.shape)], axis=1)
        keep = np.argsort(all_d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(all_d, keep, 1), np.take_along_axis(all_i, keep, 1)
    return best_i


@dataclass(frozen=True)
class Memorisation:
    max_ssim: np.ndarray  # (n,) the highest SSIM of each generated image against the training set
    nearest: np.ndarray  # (n,) index (in the training split) of that patch
    threshold: float

    @property
    def copies(self) -> int:
        return int((self.max_ssim >= self.threshold).sum())


def memorisation(generated: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                 read: Callable[[int], np.ndarray], k: int = 16, threshold: float = 0.9) -> Memorisation:
    """Highest SSIM of each generated image against its k nearest training patches; `read(i)` gives
    training patch i as the run sees it."""
    candidates = nearest_candidates(generated, batches, k)
    cache: dict[int, np.ndarray] = {}
    best, nearest = np.zeros(len(generated)), np.zeros(len(generated), np.int64)
    for g, row in enumerate(candidates):
        scores = []
        for i in row.tolist():
            if i not in cache:
                cache[i] = read(i)
            scores.append(ssim(generated[g], cache[i]))
        j = int(np.argmax(scores))
        best[g], nearest[g] = scores[j], row[j]
    return Memorisation(best, nearest, threshold)


def pairwise_ssim(images: np.ndarray, max_pairs: int = 2000, seed: int = 0) -> np.ndarray:
    """SSIM of distinct pairs of images: all pairs, or `max_pairs` of them drawn at random.
    Returns (pairs, 3): first index, second index, SSIM."""
    n = len(images)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[p] for p in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
    return np.array([(i, j, ssim(images[i], images[j])) for i, j in pairs])


def per_image_mean(pairs: np.ndarray, n: int) -> np.ndarray:
    """Each image's mean SSIM to the others it was paired with (the unit a CI can be taken over)."""
    total, count = np.zeros(n), np.zeros(n)
    for i, j, s in pairs:
        for k in (int(i), int(j)):
            total[k] += s
            count[k] += 1
    return total[count > 0] / count[count > 0]

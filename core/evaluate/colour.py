"""Colour statistics of generated patches against real ones.

H&E and IHC stains give tissue a narrow palette (pink/purple or brown/blue on white); a young
diffusion model's first failure is colours the data never has. The per-channel Wasserstein-1
distance between pixel-value distributions measures that directly, in grey levels (0-255).
"""

from __future__ import annotations

import numpy as np


def channel_histograms(images: np.ndarray) -> np.ndarray:
    """(3, 256) probability of each grey level per RGB channel over uint8 images (N, H, W, 3)."""
    pixels = np.asarray(images, dtype=np.uint8).reshape(-1, 3)
    counts = np.stack([np.bincount(pixels[:, c], minlength=256) for c in range(3)]).astype(np.float64)
    return counts / counts.sum(axis=1, keepdims=True)


def colour_w1(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per-channel Wasserstein-1 distance (R, G, B) between the pixel values of two image sets.

    For distributions on the integers 0..255, W1 = sum_k |F_a(k) - F_b(k)| with F the cumulative
    distribution functions (Vallender 1974), in grey levels."""
    cdf_a = np.cumsum(channel_histograms(generated), axis=1)
    cdf_b = np.cumsum(channel_histograms(real), axis=1)
    return np.abs(cdf_a - cdf_b).sum(axis=1)

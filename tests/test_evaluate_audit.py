"""Issue 18's audit of the evaluation metrics, one regression test per finding: SSIM as Wang et al.
define it, FID without a bootstrap that lies above its own estimate, diversity ranked by its distance
to the real data's own with an interval that covers, memorisation that sees dihedral copies and
ignores blank patches, NaN never stored, and no classifier that saw the evaluation split."""

import numpy as np
import pytest

from core.evaluate import ssim


def textured(rng, n, size=32):
    """n smooth random uint8 images (blurred noise: structure SSIM can see)."""
    from scipy.ndimage import gaussian_filter

    noise = rng.normal(size=(n, size, size, 3))
    smooth = np.stack([gaussian_filter(x, sigma=(2, 2, 0)) for x in noise])
    return np.clip(128 + 60 * smooth / smooth.std(), 0, 255).astype(np.uint8)


# ---- SSIM: Wang et al. 2004's Gaussian window ------------------------------------------------------
def wang_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out from Wang et al. 2004 with scipy: Gaussian-weighted means, population
    (co)variances, C1 = (0.01 L)^2, C2 = (0.03 L)^2, the mean of the map inside the 11x11 window's
    reach, averaged over channels."""
    from scipy.ndimage import gaussian_filter

    def blur(x):
        return gaussian_filter(x, sigma=1.5, truncate=3.5, mode="reflect")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        values.append(m[5:-5, 5:-5].mean())
    return float(np.mean(values))


def test_ssim_uses_the_papers_gaussian_window_with_population_covariances():
    rng = np.random.default_rng(0)
    a = textured(rng, 1)[0]
    b = np.clip(a.astype(int) + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    assert ssim.ssim(a, b) == pytest.approx(wang_ssim(a, b), abs=1e-6)
    from skimage.metrics import structural_similarity

    uniform_7x7 = structural_similarity(a, b, data_range=255, channel_axis=-1)
    assert abs(ssim.ssim(a, b) - uniform_7x7) > 1e-3  # the old default window gives another number

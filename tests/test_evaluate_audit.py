"""Issue 18's audit of the evaluation metrics, one regression test per finding: SSIM as Wang et al.
define it, FID without a bootstrap that lies above its own estimate, diversity ranked by its distance
to the real data's own with an interval that covers, memorisation that sees dihedral copies and
ignores blank patches, NaN never stored, and no classifier that saw the evaluation split."""

import math

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


# ---- FID: no bootstrap, a regularised square root, FID-infinity ----------------------------------
def reference_fid(x, y):
    """The Frechet distance as pytorch-fid writes it, with scipy's sqrtm on a full-rank product."""
    from scipy.linalg import sqrtm

    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s_x + s_y - 2 * sqrtm(s_x @ s_y).real))


def test_fid_matches_the_reference_and_carries_no_bootstrap_interval():
    from core.evaluate import distances

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(256, 8)), rng.normal(0.3, 1.2, size=(256, 8))
    found = distances.fid(x, y)
    assert found.value == pytest.approx(reference_fid(x, y), rel=1e-9)
    assert not hasattr(found, "low") and not hasattr(found, "high")


def test_fid_infinity_removes_most_of_the_small_sample_bias():
    """Two sets from one distribution: FID's truth is 0, its estimate at n = 128 in 16 dimensions is
    far above (the bias the old bootstrap interval sat on); FID-infinity lands near 0."""
    from core.evaluate import distances

    rng = np.random.default_rng(6)
    plain, extrapolated = [], []
    for _ in range(20):
        found = distances.fid(rng.normal(size=(128, 16)), rng.normal(size=(128, 16)), seed=int(rng.integers(1000)))
        plain.append(found.value)
        extrapolated.append(found.infinity)
    assert np.mean(plain) > 1.0
    assert abs(np.mean(extrapolated)) < 0.25 * np.mean(plain)


def test_fid_of_a_rank_deficient_covariance_is_regularised_and_finite():
    """Fewer images (20) than features (64): the covariances are singular."""
    from core.evaluate import distances

    rng = np.random.default_rng(7)
    x = rng.normal(size=(20, 64))
    assert distances.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-3)
    value = distances.frechet_distance(x, rng.normal(size=(20, 64)))
    assert np.isfinite(value) and value > 0


def test_a_large_imaginary_part_of_the_square_root_is_an_error_not_dropped():
    from core.evaluate import distances

    with pytest.raises(distances.FrechetError, match="imaginary part"):
        distances.covariance_root_trace(np.eye(2), np.diag([-1.0, 4.0]))  # sqrt(-1) = i: no real root
    assert distances.covariance_root_trace(np.eye(2), np.diag([1.0, 4.0])) == pytest.approx(3.0)


def test_an_fid_whose_square_root_fails_is_a_failed_result_with_the_reason(monkeypatch):
    from core.evaluate import distances, service

    def broken(*args, **kwargs):
        raise distances.FrechetError("FID: the covariance square root has an imaginary part of 0.5")

    monkeypatch.setattr(distances, "fid", broken)
    result = service.fid_result(np.zeros((8, 4)), np.zeros((8, 4)), "features", 0)
    assert service.failure_reason(result) == "FID: the covariance square root has an imaginary part of 0.5"
    fine = service.Result("kid", 0.1, 0.0, 0.2, 8, {})
    assert service.failure_reason(fine) is None
    assert "not a finite number" in service.failure_reason(service.Result("kid", 0.1, math.nan, 0.2, 8, {}))


# ---- diversity: distance to the real data's own, an interval that covers ------------------------------
def gaussian_kernel_matrix(x):
    """exp(-(x_i - x_j)^2): for x ~ N(0, s^2) its mean over pairs is 1 / sqrt(1 + 4 s^2) exactly."""
    return np.exp(-(x[:, None] - x[None, :]) ** 2)


def test_pair_mean_and_its_jackknife_interval_cover_the_truth_in_simulation():
    """Known truth: the pairwise mean of exp(-(x-y)^2) for x ~ N(0, 1) is 1/sqrt(5), for N(0, 0.25)
    1/sqrt(2). The per-image-mean t-interval this replaces covered 0.68-0.84; the jackknife of the
    whole U-statistic should cover 0.95 (Monte-Carlo sd 0.01 at 600 sweeps)."""
    rng = np.random.default_rng(8)
    truth = 1 / math.sqrt(5) - 1 / math.sqrt(2)
    sweeps, difference_hits, distance_hits = 600, 0, 0
    for _ in range(sweeps):
        found = ssim.diversity(gaussian_kernel_matrix(rng.normal(size=30)),
                               gaussian_kernel_matrix(rng.normal(0, 0.5, size=30)))
        difference_hits += found.difference_ci[0] <= truth <= found.difference_ci[1]
        distance_hits += found.distance_ci[0] <= abs(truth) <= found.distance_ci[1]
    assert 0.92 <= difference_hits / sweeps <= 0.985
    assert 0.92 <= distance_hits / sweeps <= 0.985


def test_pair_mean_is_the_mean_over_distinct_pairs():
    matrix = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    assert ssim.pair_mean(matrix).value == pytest.approx(0.4)


def test_diversity_ranks_the_real_datas_own_spread_best_not_noise_or_collapse():
    """Pure noise (pairwise SSIM near 0) ranked best when lower SSIM was better; now the set that
    looks like the real patches is nearest, and noise and a collapsed model are both far."""
    rng = np.random.default_rng(9)
    shared = textured(rng, 1).astype(float)  # what patches of one tissue have in common

    def patches():
        return (0.35 * shared + 0.65 * textured(rng, 16)).astype(np.uint8)

    real = ssim.pairwise_matrix(patches())
    like_real = ssim.diversity(ssim.pairwise_matrix(patches()), real)
    noise = ssim.diversity(ssim.pairwise_matrix(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)), real)
    one = textured(rng, 1)
    collapsed_images = np.clip(one.astype(int) + rng.normal(0, 4, (16, 32, 32, 3)), 0, 255).astype(np.uint8)
    collapsed = ssim.diversity(ssim.pairwise_matrix(collapsed_images), real)
    assert 0.15 < like_real.real.value < 0.6 and like_real.distance_ci[0] == 0.0  # the interval holds 0
    assert like_real.distance < noise.distance and like_real.distance < collapsed.distance
    assert noise.distance_ci[0] > like_real.distance_ci[1] and collapsed.distance_ci[0] > like_real.distance_ci[1]

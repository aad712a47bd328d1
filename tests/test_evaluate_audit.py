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
    from core.evaluate import distances, results

    def broken(*args, **kwargs):
        raise distances.FrechetError("FID: the covariance square root has an imaginary part of 0.5")

    monkeypatch.setattr(distances, "fid", broken)
    result = results.fid_result(np.zeros((8, 4)), np.zeros((8, 4)), "features", 0)
    assert results.failure_reason(result) == "FID: the covariance square root has an imaginary part of 0.5"
    fine = results.Result("kid", 0.1, 0.0, 0.2, 8, {})
    assert results.failure_reason(fine) is None
    assert "not a finite number" in results.failure_reason(results.Result("kid", 0.1, math.nan, 0.2, 8, {}))


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


# ---- memorisation: dihedral copies, blank patches, a guard with its figure ----------------------------
def streamed(train, block=64):
    """(indices, images) blocks over a training set, as core.data.prepared.training_batches yields them."""
    for start in range(0, len(train), block):
        yield np.arange(start, min(start + block, len(train))), train[start:start + block]


def test_numpy_dihedral_is_the_training_augmentation():
    import torch

    from core.data.transforms import dihedral as torch_dihedral

    rng = np.random.default_rng(10)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    expected = torch_dihedral(torch.from_numpy(images).permute(0, 3, 1, 2), torch.arange(8)).permute(0, 2, 3, 1).numpy()
    for code in range(8):
        np.testing.assert_array_equal(ssim.dihedral(images[code], code), expected[code])


def test_memorisation_finds_rotated_and_mirrored_copies_of_training_patches():
    """Training augments with the 8 dihedral transforms, so a model can reproduce a training patch
    turned or mirrored: those copies scored SSIM 0.06-0.12 and 8 of 16 planted ones went uncounted."""
    rng = np.random.default_rng(11)
    train = textured(rng, 300)
    generated = textured(rng, 12)
    planted = {code: 20 * code + 7 for code in range(8)}
    for code, index in planted.items():
        generated[code] = ssim.dihedral(train[index], code)
    found = ssim.memorisation(generated, streamed(train), lambda i: train[i], k=4, threshold=0.9)
    assert found.copies == 8 and found.flagged[:8].all() and not found.flagged[8:].any()
    assert np.allclose(found.max_ssim[:8], 1.0) and found.nearest[:8].tolist() == list(planted.values())
    assert found.max_ssim[8:].max() < 0.6


def test_near_blank_patches_are_never_counted_as_copies():
    """Two different near-white background patches (mean 226, sd 3) scored SSIM 0.953, above the 0.9
    threshold, though neither holds tissue."""
    rng = np.random.default_rng(12)
    train = textured(rng, 64)
    train[5] = np.clip(rng.normal(226, 3, (32, 32, 3)), 0, 255).astype(np.uint8)
    generated = np.clip(rng.normal(226, 3, (2, 32, 32, 3)), 0, 255).astype(np.uint8)
    generated[1] = train[9]  # a real copy of tissue still counts
    found = ssim.memorisation(generated, streamed(train), lambda i: train[i], k=4, threshold=0.9)
    assert found.blank.tolist() == [True, False] and found.nearest[0] == 5
    assert found.copies == 1 and found.flagged.tolist() == [False, True]
    assert not ssim.near_blank(train[9])


def test_the_memorisation_figure_writes_each_pairs_ssim_beside_it():
    from core.evaluate.results import memorisation_figure

    rng = np.random.default_rng(13)
    samples, matches = textured(rng, 2), textured(rng, 2)
    first = memorisation_figure(samples, matches, ["SSIM 0.953", "SSIM 0.120"], 1)
    second = memorisation_figure(samples, matches, ["SSIM 0.412", "SSIM 0.120"], 1)
    pairs_width = 2 * 32 + 3 * 2
    caption = first[:, pairs_width:]
    assert (caption < 128).any()  # dark text on the white strip
    rows = 32 + 2
    assert not np.array_equal(first[:rows, pairs_width:], second[:rows, pairs_width:])
    assert np.array_equal(first[rows:, pairs_width:], second[rows:, pairs_width:])
    np.testing.assert_array_equal(first[2:34, 2:34], samples[0])


# ---- the classifier must not have seen the evaluation split (Kaggle layout) ----------------------------
class KaggleLike:
    def __init__(self, ids):
        self.ids = ids


def test_a_classifier_records_the_patches_it_trained_on_and_the_overlap_is_found():
    from core.evaluate.classifier import seen_in, training_record

    record = training_record(KaggleLike(["c", "a", "b"]))
    assert record["ids"] == ["a", "b", "c"] and len(record["sha256"]) == 64
    assert seen_in(record, KaggleLike(["x", "b", "y"]), "test") == ["b"]
    assert seen_in(record, KaggleLike(["x", "y"]), "test") == []
    assert seen_in(None, KaggleLike(["x"]), "test") is None  # no record: unknown, never assumed clean


def test_eval_refuses_a_classifier_that_trained_on_the_runs_test_patches(workdir, cli):
    """The run froze its Kaggle split; the CSV then grew by one id, and `classifier train` recomputed
    its own split from it, so some of the run's test ids were in the classifier's training set."""
    import csv
    import hashlib
    import json

    import imageio.v3 as iio

    from conftest import TINY, write_kaggle
    from test_bad_input_corpus import store_fingerprint

    root, _ = write_kaggle(workdir / "kaggle", n=60)
    assert cli("train", "--data", str(root), *TINY, "--max-steps", "2").code == 0
    extra = hashlib.sha1(b"one more").hexdigest()
    iio.imwrite(root / "train" / f"{extra}.tif", np.zeros((96, 96, 3), np.uint8))
    with (root / "train_labels.csv").open("a", newline="") as fh:
        csv.writer(fh).writerow([extra, 1])
    assert cli("classifier", "train", "--data", str(root), "--max-steps", "2", "--batch-size", "8",
               "--device", "cpu").code == 0
    run_test_ids = json.loads((workdir / "runs" / "1" / "split.json").read_text())["test"]
    record = json.loads((workdir / "runs" / "classifiers" / "1" / "trained_on.json").read_text())
    leaked = [i for i in run_test_ids if i in set(record["ids"])]
    assert leaked, "the test needs an overlap to exist"
    before = store_fingerprint(workdir)
    r = cli("eval", "1", "--metrics", "kid", "--n", "4")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r
    assert f"it trained on {len(leaked)} patches of run 1's test split (e.g. {leaked[0]})" in r.err, r
    assert store_fingerprint(workdir) == before


def test_pairwise_matrix_takes_a_seeded_random_subset_not_the_first_images_in_file_order():
    rng = np.random.default_rng(14)
    images = np.concatenate([np.repeat(textured(rng, 1), 6, axis=0), textured(rng, 6)])  # 6 alike, then 6 apart
    first_six = ssim.pairwise_matrix(images[:6], max_images=6)
    drawn = ssim.pairwise_matrix(images, max_images=6, seed=3)
    assert np.allclose(first_six, 1.0) and not np.allclose(drawn, 1.0)
    np.testing.assert_array_equal(drawn, ssim.pairwise_matrix(images, max_images=6, seed=3))

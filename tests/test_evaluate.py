"""Evaluation: the bound in bits/dim against closed forms and an exact denoiser, KID/FID/SSIM on
cases with known answers, the classifier, and `ddpm-tui eval` from end to end."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import TINY, write_pcam
from core.diffusion import GaussianDiffusion, make_betas
from core.evaluate import distances, ssim
from core.evaluate.classifier import PatchClassifier, predict, roc_auc
from core.evaluate.nll import (discretized_gaussian_log_likelihood, normal_kl, prior_bpd, seeded_noise,
                               stratified_timesteps, variational_bound)
from core.store import Store, queries

LEVELS = torch.linspace(-1, 1, 256, dtype=torch.float64)


# ---- the bound ---------------------------------------------------------------------------------------
def test_normal_kl_matches_the_closed_form():
    m1, v1, m2, v2 = 0.3, 0.5, -0.2, 2.0
    expected = math.log(math.sqrt(v2) / math.sqrt(v1)) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5
    got = normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, math.log(v1), m2, math.log(v2))))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    assert float(normal_kl(torch.tensor(1.0), torch.tensor(0.3), torch.tensor(1.0), torch.tensor(0.3))) == 0


@pytest.mark.parametrize("mean,log_scale", [(0.0, -3.0), (0.9, -4.0), (-1.0, -1.0), (0.3, -6.0)])
def test_discretised_gaussian_probabilities_over_the_256_levels_sum_to_one(mean, log_scale):
    logp = discretized_gaussian_log_likelihood(LEVELS, torch.full_like(LEVELS, mean), torch.full_like(LEVELS, log_scale))
    assert float(torch.exp(logp).sum()) == pytest.approx(1.0, abs=1e-6)


def test_prior_term_of_the_cosine_schedule_is_negligible():
    x0 = torch.rand(8, 3, 8, 8) * 2 - 1
    assert float(prior_bpd(GaussianDiffusion(make_betas("cosine", 1000)), x0).max()) < 1e-3


def discrete_gaussian(mu: float, sigma: float) -> torch.Tensor:
    edges = torch.cat([torch.tensor([-math.inf], dtype=torch.float64), (LEVELS[:-1] + LEVELS[1:]) / 2,
                       torch.tensor([math.inf], dtype=torch.float64)])
    cdf = 0.5 * (1 + torch.erf((edges - mu) / (sigma * math.sqrt(2))))
    return cdf[1:] - cdf[:-1]


def oracle_denoiser(diffusion, p):
    """The Bayes-optimal x0 prediction E[x_0 | x_t] for pixels drawn i.i.d. from p over the 256 levels."""
    sab = torch.tensor(diffusion.np["sqrt_alpha_bar"])
    s1 = torch.tensor(diffusion.np["sqrt_one_minus_alpha_bar"])
    logp = torch.log(p.clamp(min=1e-300))

    def net(xt, t, y):
        a, b = sab[t].reshape(-1, 1, 1, 1, 1), s1[t].reshape(-1, 1, 1, 1, 1)
        w = torch.softmax(logp - (xt.double().unsqueeze(-1) - a * LEVELS) ** 2 / (2 * b ** 2), dim=-1)
        return (w * LEVELS).sum(-1).float()

    return net


@pytest.fixture(scope="module")
def known_data():
    diffusion = GaussianDiffusion(make_betas("cosine", 100), objective="x0")
    p = discrete_gaussian(0.1, 0.25)
    entropy = float(-(p[p > 0] * torch.log2(p[p > 0])).sum())
    idx = torch.multinomial(p.float(), 24 * 3 * 4 * 4, replacement=True, generator=torch.Generator().manual_seed(0))
    x0 = LEVELS[idx].reshape(24, 3, 4, 4).float()
    full = variational_bound(oracle_denoiser(diffusion, p), diffusion, x0)
    return diffusion, p, entropy, x0, full


def test_bound_with_the_exact_denoiser_is_above_the_true_discrete_nll_and_close(known_data):
    _, _, entropy, _, full = known_data
    assert full.exact and full.kl.shape == (24, 99)
    bound = full.total.mean()
    assert entropy < bound < entropy + 1.2, (entropy, bound)


def test_a_worse_denoiser_gives_a_looser_bound(known_data):
    diffusion, _, _, x0, full = known_data
    worse = variational_bound(lambda xt, t, y: torch.zeros_like(xt), diffusion, x0)
    assert worse.total.mean() > full.total.mean() + 1


def test_k_timestep_estimate_is_unbiased_and_its_ci_covers_the_full_bound(known_data):
    diffusion, p, _, x0, full = known_data
    est = variational_bound(oracle_denoiser(diffusion, p), diffusion, x0, timesteps=10, seed=3)
    assert not est.exact and est.kl.shape == (24, 10) and est.weights.sum() == 99
    half = 1.96 * est.total.std(ddof=1) / math.sqrt(len(est.total))
    assert abs(est.total.mean() - full.total.mean()) < half


def test_stratified_timesteps_cover_every_stratum():
    ts, weights = stratified_timesteps(1000, 7, 50, np.random.default_rng(0))
    edges = np.concatenate([[1], 1 + np.cumsum(weights)]).astype(int)
    assert weights.sum() == 999 and edges[-1] == 1000
    for k in range(7):
        assert ((ts[:, k] >= edges[k]) & (ts[:, k] < edges[k + 1])).all()


def test_fixed_noise_and_any_batching_give_the_same_numbers(known_data):
    diffusion, p, _, x0, full = known_data
    net = oracle_denoiser(diffusion, p)
    noise = seeded_noise(x0.shape, seed=0)
    a = variational_bound(net, diffusion, x0, noise_fn=noise, max_batch=7)
    b = variational_bound(net, diffusion, x0, noise_fn=noise, max_batch=500)
    np.testing.assert_allclose(a.total, b.total, rtol=1e-12)
    np.testing.assert_allclose(a.total, full.total, rtol=1e-12)  # the default noise is seeded noise 0


# ---- KID, FID, SSIM ----------------------------------------------------------------------------------
def demo_features(tmp_path, split):
    from core.data.demo import write_demo_dataset
    from core.evaluate.classifier import held_out_patches

    root = tmp_path / "demo"
    if not root.exists():
        write_demo_dataset(root)
    images, _ = held_out_patches(root, split, 32, "center-crop")
    torch.manual_seed(0)
    return predict(PatchClassifier().eval(), images)[0]


def test_kid_of_two_halves_of_the_same_real_split_covers_zero_and_of_another_split_does_not(tmp_path):
    feats = demo_features(tmp_path, "test")
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(feats))
    same, _ = distances.kid(feats[perm[:64]], feats[perm[64:128]])
    assert same.low <= 0 <= same.high
    shifted, _ = distances.kid(feats[perm[:64]] + 0.5 * feats.std(0), feats[perm[64:128]])
    assert shifted.low > 0


def test_mmd_estimator_is_unbiased_for_equal_distributions():
    rng = np.random.default_rng(1)
    values = [distances.mmd2_unbiased(rng.normal(size=(40, 8)), rng.normal(size=(40, 8))) for _ in range(300)]
    assert abs(np.mean(values)) < 3 * np.std(values) / math.sqrt(len(values))


def test_fid_is_the_squared_mean_distance_for_equal_covariances():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 3))
    shift = np.array([1.0, -2.0, 0.5])
    assert distances.frechet_distance(x, x + shift) == pytest.approx(float((shift ** 2).sum()), rel=1e-6)
    assert distances.frechet_distance(x, x) == pytest.approx(0, abs=1e-6)
    found = distances.fid(x[:500], x[500:1000] + shift)
    assert found.value == pytest.approx(float((shift ** 2).sum()), abs=0.5)
    assert found.infinity == pytest.approx(float((shift ** 2).sum()), abs=0.5)


def test_memorisation_flags_a_planted_copy_of_a_training_patch():
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    generated[4] = train[137]

    def batches():
        for start in range(0, 300, 64):
            yield np.arange(start, min(start + 64, 300)), train[start:start + 64]

    found = ssim.memorisation(generated, batches(), lambda i: train[i], k=4, threshold=0.9)
    assert found.copies == 1 and found.max_ssim[4] == pytest.approx(1.0) and found.nearest[4] == 137
    assert found.transform[4] == 0
    assert found.max_ssim[[0, 1, 2, 3, 5]].max() < 0.5


def test_pairwise_ssim_of_copies_is_one_and_of_noise_is_low():
    rng = np.random.default_rng(4)
    same = np.repeat(rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8), 5, axis=0)
    assert np.allclose(ssim.pairwise_matrix(same), 1.0)
    noise = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    matrix = ssim.pairwise_matrix(noise)
    assert (matrix - np.eye(5)).max() < 0.2 and np.allclose(matrix, matrix.T)


def test_roc_auc_counts_ordered_pairs_and_ties_half():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5


# ---- end to end ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny conditional run and a classifier, trained once for the tests below (T = 50)."""
    import os

    from ddpm_tui.cli import main

    root = tmp_path_factory.mktemp("eval")
    write_pcam(root / "pcam", {"train": 96, "valid": 32, "test": 40})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for args in (["train", "--data", "pcam", *TINY, "--conditional", "--max-steps", "4", "--ckpt-every", "2"],
                     ["classifier", "train", "--data", "pcam", "--max-steps", "20", "--batch-size", "16"]):
            with pytest.raises(SystemExit) as exit_info:
                main(args)
            assert exit_info.value.code == 0, args
    finally:
        os.chdir(cwd)
    return root


def test_eval_computes_stores_and_shows_every_metric_with_its_ci(evaluated, cli, monkeypatch):
    monkeypatch.chdir(evaluated)
    r = cli("eval", "1", "--metrics", "nll,ssim,kid,fid,class", "--n", "16", "--steps", "5", "--json")
    assert r.code == 0, r
    rows = {e["metric"]: e for e in json.loads(r.out)}
    assert set(rows) == {"nll", "ssim_memorisation", "ssim_diversity", "kid", "fid", "class_fidelity"}
    for e in rows.values():
        assert e["n"] == 16 and e["split"] == "test" and e["checkpoint_step"] == 4
        if e["metric"] == "fid":  # no interval: a bootstrap of FID lies above its own estimate
            assert e["ci_low"] is None and e["ci_high"] is None and e["details"]["ci"].startswith("none:")
        else:
            assert e["ci_low"] <= e["value"] <= e["ci_high"]
    nll = rows["nll"]
    assert nll["details"]["estimate"] is False and nll["details"]["timesteps"] == "all"
    assert nll["details"]["likelihood"].startswith("log p(x|y)") and 0 < nll["value"] < 20
    assert rows["kid"]["classifier_id"] == 1 and "PCam-classifier 1 features" in rows["kid"]["details"]["space"]
    assert rows["kid"]["sampler"] == "ddim" and rows["kid"]["steps"] == 5 and rows["nll"]["sampler"] is None
    assert set(rows["class_fidelity"]["details"]["per_class"]) == {"cancerous", "non_cancerous"}
    stored = queries.evaluations(Store("sqlite:///runs.db"), [1])
    assert len(stored) == 6 and len(stored[0].details["per_image"]) == 16
    shown = json.loads(cli("runs", "show", "1", "--json").out)
    assert {e["metric"] for e in shown["evaluations"]} == set(rows)

    r = cli("eval", "1", "--metrics", "nll", "--n", "8", "--nll-timesteps", "5", "--checkpoint", "2")
    assert r.code == 0 and "NLL bits/dim" in r.out and "unbiased estimate" in r.out, r
    latest = queries.latest_evaluations(Store("sqlite:///runs.db"), [1])[1]["nll"]
    assert latest.details["estimate"] is True and latest.checkpoint_step == 2 and latest.n == 8


BAD_EVAL = [
    (["eval", "1", "--metrics", "nll,beauty"], "--metrics: unknown metric 'beauty'"),
    (["eval", "1", "--nll-timesteps", "0"], "--nll-timesteps: must be at least 1, got 0"),
    (["eval", "1", "--n", "41"], "--n 41: the test split has only 40 patches"),
    (["eval", "1", "--split", "holdout"], "--split: 'holdout' is not a held-out split"),
    (["eval", "1", "--checkpoint", "3"], "--checkpoint 3: no ckpt-00000003.pt"),
    (["eval", "1", "--n", "16", "--metrics", "kid", "--classifier", "9"], "--classifier: no classifier with id 9"),
    (["eval", "7"], "no run with id 7"),
]


@pytest.mark.parametrize("args,message", BAD_EVAL)
def test_bad_eval_requests_are_one_line_and_store_nothing(evaluated, cli, monkeypatch, args, message):
    monkeypatch.chdir(evaluated)
    before = len(queries.evaluations(Store("sqlite:///runs.db")))
    r = cli(*args)
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1, r
    assert len(queries.evaluations(Store("sqlite:///runs.db"))) == before


def test_eval_of_a_run_without_checkpoint_or_classifier_or_split_says_how(workdir, cli, pcam):
    assert cli("launch", "--data", pcam, *TINY, "--queue").code == 0
    r = cli("eval", "1")
    assert r.code == 2 and "run 1 has no checkpoint yet" in r.err
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "2").code == 0
    r = cli("eval", "2", "--metrics", "fid", "--n", "8")
    assert r.code == 2 and "--metrics fid needs a PCam classifier" in r.err, r
    assert "train one with `ddpm-tui classifier train --data" in r.err, r
    r = cli("eval", "2", "--metrics", "class")
    assert r.code == 2 and "class fidelity needs a --conditional run or one trained on a single class" in r.err
    (pcam / "camelyonpatch_level_2_split_valid_x.h5").unlink()
    r = cli("eval", "2", "--split", "valid", "--n", "8")
    assert r.code == 2 and "--split valid:" in r.err and "missing file" in r.err
    assert queries.evaluations(Store("sqlite:///runs.db")) == []


def test_an_evaluation_that_yields_nan_is_a_failure_with_its_reason_never_a_stored_value(evaluated, cli, monkeypatch):
    """SQLite refused a NaN with a raw IntegrityError; PostgreSQL stored it and `rank` broke on it."""
    from core.evaluate import service
    from core.evaluate.job import run_job

    monkeypatch.chdir(evaluated)
    store = Store("sqlite:///runs.db")
    before = len(queries.evaluations(store))
    monkeypatch.setattr(service, "nll_result", lambda *a, **k: service.Result("nll", math.nan, math.nan, math.nan, 8, {}))
    r = cli("eval", "1", "--metrics", "nll", "--n", "8")
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1, r
    assert "evaluation failed for nll" in r.err and "not a finite number" in r.err, r
    assert len(queries.evaluations(store)) == before
    assert queries.queue_eval_job(store, 1, "nll", 8, "all")
    job = queries.claim_eval_job(store, "here", 1)
    assert run_job(store, job.id) == 1
    failed = queries.get_eval_job(store, job.id)
    assert failed.status == "failed" and "evaluation failed for nll" in failed.reason
    assert len(queries.evaluations(store)) == before


def test_the_detached_evaluation_prints_fid_without_an_interval(evaluated, monkeypatch, capsys):
    """FID is stored without an interval now; the TUI's detached evaluation printed every row's."""
    from core.evaluate import job
    from core.locations import STORE_ENV

    monkeypatch.chdir(evaluated)
    monkeypatch.setenv(STORE_ENV, "sqlite:///runs.db")
    assert job.main(["1", "--metrics", "fid", "--n", "16"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run 1 fid")]
    assert len(printed) == 1 and "[" not in printed[0], printed

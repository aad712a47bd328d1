"""The diffusion maths against closed forms computed independently here, in float64."""

import math

import numpy as np
import pytest
import torch

from core.diffusion import GaussianDiffusion, make_betas
from core.diffusion.sampling import ddim_sample, ddpm_sample, guided, respaced_timesteps
from core.diffusion.schedules import SCHEDULES


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("T", [10, 100, 1000])
def test_schedule_shape_range_and_monotone(name, T):
    betas = make_betas(name, T)
    assert betas.dtype == np.float64 and betas.shape == (T,)
    assert (betas > 0).all() and (betas < 1).all()
    assert (np.diff(betas) >= -1e-15).all(), "betas must not decrease"
    alpha_bar = np.cumprod(1 - betas)
    assert (np.diff(alpha_bar) < 0).all()


def test_linear_schedule_endpoints_scale_with_T():
    assert make_betas("linear", 1000)[[0, -1]] == pytest.approx([1e-4, 0.02])
    assert make_betas("linear", 100)[[0, -1]] == pytest.approx([1e-3, 0.2])
    assert make_betas("quadratic", 1000)[[0, -1]] == pytest.approx([1e-4, 0.02])


def test_cosine_schedule_matches_alpha_bar_formula():
    T, s = 1000, 0.008
    betas = make_betas("cosine", T)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = np.cumprod(1 - betas)
    for t in (1, 10, 500, 900):
        assert alpha_bar[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9)
    assert betas.max() <= 0.999 and betas[-1] == pytest.approx(0.999)


def test_constants_are_products_of_alphas():
    d = GaussianDiffusion(make_betas("linear", 200))
    alphas = 1 - make_betas("linear", 200)
    for t in (0, 1, 57, 199):
        assert d.np["alpha_bar"][t] == pytest.approx(np.prod(alphas[: t + 1]), rel=1e-12)
    assert d.np["alpha_bar_prev"][0] == 1.0


def test_posterior_matches_bayes_rule():
    """q(x_{t-1}|x_t,x0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x0): product of two Gaussians in x_{t-1}."""
    betas = make_betas("cosine", 100)
    d = GaussianDiffusion(betas)
    ab = np.cumprod(1 - betas)
    x0, xt = 0.3, -0.7
    for t in (1, 5, 50, 99):
        # q(x_t | x_{t-1}) = N(sqrt(a_t) x_{t-1}, b_t): as a function of x_{t-1}, precision a_t/b_t
        a_t, b_t = 1 - betas[t], betas[t]
        prec = a_t / b_t + 1 / (1 - ab[t - 1])
        mean = (math.sqrt(a_t) * xt / b_t + math.sqrt(ab[t - 1]) * x0 / (1 - ab[t - 1])) / prec
        m, log_var = d.q_posterior(torch.tensor([[x0]]), torch.tensor([[xt]]), torch.tensor([t]))
        assert float(m) == pytest.approx(mean, rel=1e-5)
        assert math.exp(float(log_var)) == pytest.approx(1 / prec, rel=1e-5)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_parameterisations_round_trip(objective):
    d = GaussianDiffusion(make_betas("cosine", 1000), objective=objective)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(6, 3, 4, 4, generator=g)
    t = torch.tensor([0, 1, 10, 500, 900, 999])
    xt = d.q_sample(x0, t, eps)
    # the target is exactly what predict_x0_eps inverts back to (x0, eps)
    rec_x0, rec_eps = d.predict_x0_eps(d.target(x0, t, eps), xt, t, clip=False)
    # x0 from eps is ill-conditioned at t=T-1 (divides by sqrt(alpha_bar) ~ 6e-3): compare loosely there
    assert torch.allclose(rec_x0[:5], x0[:5], atol=1e-4)
    assert torch.allclose(rec_eps[:5], eps[:5], atol=2e-3)
    v = d.v_from(x0, t, eps)
    assert torch.allclose(d.x0_from_v(xt, t, v), x0, atol=1e-5)


def test_q_sample_has_the_marginal_moments():
    d = GaussianDiffusion(make_betas("linear", 1000))
    t = torch.full((200_000,), 300)
    x0 = torch.full((200_000,), 0.8)
    xt = d.q_sample(x0, t, torch.randn(200_000, generator=torch.Generator().manual_seed(1)))
    ab = d.np["alpha_bar"][300]
    assert float(xt.mean()) == pytest.approx(math.sqrt(ab) * 0.8, abs=0.01)
    assert float(xt.var()) == pytest.approx(1 - ab, rel=0.02)


def test_training_loss_is_zero_for_a_perfect_eps_predictor():
    d = GaussianDiffusion(make_betas("cosine", 100), objective="eps")
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([3, 30, 60, 99])
    oracle = lambda xt, tt: d.eps_from_x0(xt, tt, x0)
    assert float(d.training_loss(oracle, x0, t=t, noise=noise)) < 1e-8
    assert float(d.training_loss(lambda xt, tt: torch.zeros_like(xt), x0, t=t, noise=noise)) > 0.5


def test_respaced_timesteps():
    assert respaced_timesteps(1000, 1000).tolist() == list(range(1000))
    kept = respaced_timesteps(1000, 10)
    assert len(kept) == 10 and kept[0] == 0 and kept[-1] == 999
    assert (np.diff(kept) > 0).all()


def _oracle_for(d, x0):
    """A network that always predicts the true eps for the fixed data point x0."""
    return lambda xt, t: d.eps_from_x0(xt, t, x0.expand_as(xt))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_recover_the_data_point_under_an_oracle(sampler):
    d = GaussianDiffusion(make_betas("cosine", 100))
    x0 = torch.full((1, 3, 4, 4), 0.25)
    g = torch.Generator().manual_seed(0)
    if sampler == "ddpm":
        chain = list(ddpm_sample(d, _oracle_for(d, x0), (2, 3, 4, 4), generator=g))
    else:
        chain = list(ddim_sample(d, _oracle_for(d, x0), (2, 3, 4, 4), steps=20, generator=g))
    assert chain[-1][0] == 0
    assert torch.allclose(chain[-1][1], x0.expand(2, 3, 4, 4), atol=1e-3)


def test_ddpm_last_step_adds_no_noise():
    d = GaussianDiffusion(make_betas("linear", 10))
    x0 = torch.zeros(1, 1, 2, 2)
    outs = [list(ddpm_sample(d, _oracle_for(d, x0), (1, 1, 2, 2), generator=torch.Generator().manual_seed(s)))[-1][1]
            for s in range(3)]
    # the final x equals the posterior mean at t=0, which for an exact x0 predictor is x0 for any noise
    for out in outs:
        assert torch.allclose(out, x0, atol=1e-5)


def test_ddim_eta_zero_is_deterministic_given_the_start():
    d = GaussianDiffusion(make_betas("cosine", 100))
    net = lambda x, t: 0.1 * x
    a = list(ddim_sample(d, net, (1, 3, 4, 4), steps=10, generator=torch.Generator().manual_seed(3)))[-1][1]
    b = list(ddim_sample(d, net, (1, 3, 4, 4), steps=10, generator=torch.Generator().manual_seed(3)))[-1][1]
    c = list(ddim_sample(d, net, (1, 3, 4, 4), steps=10, eta=1.0, generator=torch.Generator().manual_seed(3)))[-1][1]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_classifier_free_guidance_mixes_outputs():
    calls = []

    def net(x, t, y):
        calls.append(y.tolist())
        return torch.where(y[:, None] == 2, torch.zeros_like(x), torch.ones_like(x)) * (y[:, None] + 1)

    labels = torch.tensor([0, 1])
    fn = guided(net, labels, guidance=3.0, null_class=2)
    out = fn(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
    # cond outputs 1 and 2, uncond 0: (1+w)*cond - w*uncond
    assert out[:, 0].tolist() == [4.0, 8.0]
    assert calls == [[0, 1, 2, 2]]
    assert guided(net, labels, 0.0, 2)(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))[:, 0].tolist() == [1, 2]


def test_sigmoid_chen_is_the_alpha_bar_sigmoid():
    """Chen 2023, Alg. 1 (start -3, end 3, tau 1): alpha_bar(t) computed independently here."""
    T = 1000
    alpha_bar = np.cumprod(1 - make_betas("sigmoid-chen", T))

    def s(z):
        return 1 / (1 + math.exp(-z))

    for step in (1, 250, 500, 750, 990):
        t = step / T
        expected = (s(3) - s(6 * t - 3)) / (s(3) - s(-3))
        assert alpha_bar[step - 1] == pytest.approx(expected, rel=1e-9)
    assert math.sqrt(alpha_bar[-1]) < 1e-3


def test_sigmoid_is_the_geodiff_beta_sigmoid_and_quadratic_keeps_what_its_help_says():
    betas = make_betas("sigmoid", 1000)
    z = np.linspace(-6, 6, 1000)
    assert betas == pytest.approx(1 / (1 + np.exp(-z)) * (0.02 - 1e-4) + 1e-4)
    from core.config import TrainConfig
    import dataclasses

    help_text = next(f for f in dataclasses.fields(TrainConfig) if f.name == "schedule").metadata["help"]
    kept = math.sqrt(np.prod(1 - make_betas("quadratic", 1000)))
    assert f"keeps {kept:.1%} of the signal at T=1000" in help_text

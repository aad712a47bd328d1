"""The sampler registry and DPM-Solver++(2M), checked as DDIM is: against DDIM-1000 from the same noise,
against the exact ODE solution of Gaussian data, with an oracle, every objective and guidance, and
end to end through `sample` and `eval`."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY
from core.data.transforms import to_uint8
from core.diffusion import GaussianDiffusion, make_betas
from core.diffusion import sampling
from core.diffusion.sampling import ddim_sample, ddpm_sample, dpmpp_2m_sample, dpmpp_2m_estimate, log_snr
from core.errors import BadInput
from core.model import UNet
from core.generation import generate
from core.samplers import SAMPLERS, sampler_named

SHAPE = (4, 3, 8, 8)


def final(chain) -> torch.Tensor:
    """The sample a chain ends with."""
    return list(chain)[-1][1]


def seeded(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_conv_net(hidden: int = 16, seed: int = 0):
    """A small fixed random network: two 3x3 convolutions with a tanh and a sinusoidal time input."""
    g = torch.Generator().manual_seed(seed)
    w_in = torch.randn(hidden, 3, 3, 3, generator=g) / 3
    w_out = torch.randn(3, hidden, 3, 3, generator=g) / (3 * hidden**0.5)
    frequencies = torch.randn(hidden, generator=g)

    def net(x, t):
        time = torch.sin(frequencies * t[:, None] / 200).reshape(-1, hidden, 1, 1)
        return F.conv2d(torch.tanh(F.conv2d(x, w_in, padding=1) + time), w_out, padding=1)
    return net


@pytest.fixture(scope="module")
def ddim_1000():
    """An eps-network that is the exact denoiser of N(0, 0.5^2) data plus a fixed random network (so
    its ODE is smooth but not linear, and about a quarter of the pixels end clipped, as a real net's
    do), and its reference ODE solution: DDIM with eta 0 over all 1000 steps of a linear schedule."""
    diffusion = GaussianDiffusion(make_betas("linear", 1000))
    exact, perturbation = gaussian_data_denoiser(diffusion, mean=0.0, std=0.5), random_conv_net()
    net = lambda xt, t: diffusion.eps_from_x0(xt, t, exact(xt, t)) + perturbation(xt, t)
    return diffusion, net, final(ddim_sample(diffusion, net, SHAPE, steps=1000, generator=seeded()))


def gaussian_data_denoiser(diffusion: GaussianDiffusion, mean: float, std: float):
    """E[x_0 | x_t] for data N(mean, std^2 I): the exact x_0 prediction, in closed form."""
    def x0_of(xt, t):
        a = diffusion.c("alpha_bar", xt)[t].reshape(-1, 1, 1, 1)
        return mean + a.sqrt() * std**2 / (a * std**2 + 1 - a) * (xt - a.sqrt() * mean)
    return x0_of


def exact_ode_sample(diffusion: GaussianDiffusion, noise: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Where the probability-flow ODE of N(mean, std^2 I) data takes `noise` at t = T-1: it keeps
    (x_t - sqrt(a_t) mean) / sqrt(a_t std^2 + 1 - a_t) fixed. Then, as the samplers end, the x_0
    prediction at t = 0."""
    a_end, a_0 = diffusion.np["alpha_bar"][-1], diffusion.np["alpha_bar"][0]
    z = (noise - math.sqrt(a_end) * mean) / math.sqrt(a_end * std**2 + 1 - a_end)
    x_at_0 = math.sqrt(a_0) * mean + math.sqrt(a_0 * std**2 + 1 - a_0) * z
    return mean + math.sqrt(a_0) * std**2 / (a_0 * std**2 + 1 - a_0) * (x_at_0 - math.sqrt(a_0) * mean)


def as_objective(diffusion: GaussianDiffusion, x0_of):
    """A network that outputs, under diffusion.objective, what the x_0 predictor `x0_of` implies."""
    def net(xt, t):
        x0 = x0_of(xt, t)
        eps = diffusion.eps_from_x0(xt, t, x0)
        return {"eps": eps, "x0": x0, "v": diffusion.v_from(x0, t, eps)}[diffusion.objective]
    return net


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().sqrt().item()


# ---- the registry -----------------------------------------------------------------------------------

def test_every_registered_sampler_has_a_solver_and_an_unknown_name_is_refused():
    assert list(SAMPLERS) == ["ddpm", "ddim", "dpm++"]
    for sampler in SAMPLERS.values():
        assert callable(getattr(sampling, sampler.solver)) and sampler.description
    assert [s.name for s in SAMPLERS.values() if s.uses_eta] == ["ddim"]
    assert [SAMPLERS[name].steps_for(1000) for name in SAMPLERS] == [1000, 50, 50]
    assert SAMPLERS["dpm++"].steps_for(10) == 10
    with pytest.raises(BadInput, match=r"--sampler: unknown value 'euler' \(choose from ddpm, ddim, dpm\+\+\)"):
        sampler_named("euler")


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_the_registry_draws_ddpm_and_ddim_bit_identically_to_their_solvers(name):
    diffusion = GaussianDiffusion(make_betas("cosine", 100))
    net = lambda x, t: 0.1 * x + 0.01 * t[:, None, None, None]
    eta = 0.5 if name == "ddim" else 0.0
    direct = (ddpm_sample(diffusion, net, SHAPE, generator=seeded(), steps=20) if name == "ddpm" else
              ddim_sample(diffusion, net, SHAPE, steps=20, eta=eta, generator=seeded()))
    via_registry = sampler_named(name).sample(diffusion, net, SHAPE, 20, generator=seeded(), eta=eta)
    for (t_a, x_a, x0_a), (t_b, x_b, x0_b) in zip(direct, via_registry, strict=True):
        assert t_a == t_b and torch.equal(x_a, x_b) and torch.equal(x0_a, x0_b)


def test_sample_and_eval_help_list_the_registered_samplers(cli):
    for command in ("sample", "eval"):
        r = cli(command, "--help")
        assert r.code == 0 and "ddpm|ddim|dpm++" in r.out, r
    assert "dpm++ 50" in cli("sample", "--help").out


# ---- DPM-Solver++(2M): its maths ----------------------------------------------------------------------

def test_log_snr_and_the_second_order_estimate():
    alpha_bar = np.array([0.5, 0.8])
    assert np.allclose(log_snr(alpha_bar), np.log(np.sqrt(alpha_bar) / np.sqrt(1 - alpha_bar)))
    # equal steps (r = 1): D = 1.5 x0(t_{i-1}) - 0.5 x0(t_{i-2}), a linear extrapolation to the step's middle
    d = dpmpp_2m_estimate(torch.tensor([2.0]), torch.tensor([1.0]), h=0.3, h_before=0.3)
    assert torch.allclose(d, torch.tensor([2.5]))


def test_dpmpp_with_1000_steps_equals_ddim_1000_within_a_grey_level(ddim_1000):
    diffusion, net, reference = ddim_1000
    ours = final(dpmpp_2m_sample(diffusion, net, SHAPE, steps=1000, generator=seeded()))
    assert 0.1 < (reference.abs() > 0.999).float().mean() < 0.5  # not all clipped: the comparison means something
    grey_levels = np.abs(to_uint8(ours).astype(int) - to_uint8(reference).astype(int))
    assert grey_levels.max() <= 1 and (ours - reference).abs().max().item() < 1 / 127.5


@pytest.mark.parametrize("steps", [10, 15, 20])
def test_dpmpp_with_few_steps_is_closer_to_the_ode_solution_than_ddim(ddim_1000, steps):
    diffusion, net, reference = ddim_1000
    ddim_error = rmse(final(ddim_sample(diffusion, net, SHAPE, steps=steps, generator=seeded())), reference)
    dpmpp_error = rmse(final(dpmpp_2m_sample(diffusion, net, SHAPE, steps=steps, generator=seeded())), reference)
    # measured (RMSE on the [-1, 1] scale, ddim vs dpm++): 10 steps 0.110 vs 0.098, 15 steps 0.071 vs
    # 0.054, 20 steps 0.053 vs 0.034
    assert dpmpp_error < {10: 0.95, 15: 0.85, 20: 0.75}[steps] * ddim_error, (steps, dpmpp_error, ddim_error)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_dpmpp_20_steps_lands_nearer_the_exact_ode_solution_of_gaussian_data(schedule):
    diffusion = GaussianDiffusion(make_betas(schedule, 1000), objective="x0")
    denoiser = gaussian_data_denoiser(diffusion, mean=0.3, std=0.5)
    noise = torch.randn(SHAPE, generator=seeded())
    exact = exact_ode_sample(diffusion, noise, mean=0.3, std=0.5)
    error = {name: (final(solver(diffusion, denoiser, SHAPE, steps=20, generator=seeded(), clip=False)) - exact)
             .abs().max().item() for name, solver in (("ddim", ddim_sample), ("dpm++", dpmpp_2m_sample))}
    # measured: linear 0.27 (ddim) vs 0.09 (dpm++), cosine 0.15 vs 0.006
    assert error["dpm++"] < error["ddim"] / 2.5, error


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_dpmpp_recovers_the_data_point_under_an_oracle_for_every_objective(objective):
    diffusion = GaussianDiffusion(make_betas("cosine", 100), objective=objective)
    point = torch.full((1, 3, 4, 4), 0.25)
    oracle = as_objective(diffusion, lambda xt, t: point.expand_as(xt))
    chain = list(dpmpp_2m_sample(diffusion, oracle, (2, 3, 4, 4), steps=20, generator=seeded(0)))
    assert len(chain) == 20 and chain[-1][0] == 0
    assert torch.allclose(chain[-1][1], point.expand(2, 3, 4, 4), atol=1e-4)


def test_dpmpp_draws_the_same_samples_whichever_objective_the_network_was_trained_for():
    samples = {}
    for objective in ("eps", "x0", "v"):
        diffusion = GaussianDiffusion(make_betas("cosine", 1000), objective=objective)
        net = as_objective(diffusion, gaussian_data_denoiser(diffusion, mean=0.3, std=0.5))
        samples[objective] = final(dpmpp_2m_sample(diffusion, net, SHAPE, steps=15, generator=seeded()))
    assert samples["eps"].std() > 0.1
    assert torch.allclose(samples["eps"], samples["x0"], atol=1e-3)
    assert torch.allclose(samples["v"], samples["x0"], atol=1e-3)


def test_dpmpp_samples_a_conditional_network_with_classifier_free_guidance():
    torch.manual_seed(0)
    net = UNet(image_size=8, dim=16, dim_mults=(1, 2), res_blocks=1, attention="none", num_classes=2).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.05)
    diffusion = GaussianDiffusion(make_betas("cosine", 100), objective="v")
    draw = lambda guidance: generate(net, diffusion, 4, 8, "dpm++", 10, guidance=guidance, class_label=1, seed=3).images
    plain, guided_images = draw(0.0), draw(3.0)
    assert guided_images.shape == (4, 8, 8, 3) and guided_images.dtype == np.uint8
    assert np.array_equal(guided_images, draw(3.0))  # deterministic given the seed
    assert not np.array_equal(plain, guided_images)


# ---- end to end -----------------------------------------------------------------------------------------

def test_sample_and_eval_with_dpmpp_from_a_trained_run(workdir, cli, pcam):
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "2")
    assert r.code == 0, r
    r = cli("sample", "1", "--n", "4", "--sampler", "dpm++", "--steps", "20", "--out", workdir / "g.png")
    assert r.code == 0 and "dpm++: 20 of 50 steps" in r.err, r
    assert (workdir / "g.png").stat().st_size > 0
    r = cli("sample", "1", "--n", "2", "--sampler", "dpm++", "--out", workdir / "d.png")
    assert r.code == 0 and "dpm++: 50 of 50 steps" in r.err, r  # its own default
    r = cli("eval", "1", "--metrics", "ssim", "--n", "8", "--sampler", "dpm++", "--steps", "5", "--json")
    assert r.code == 0, r
    rows = json.loads(r.out)
    assert rows and all(e["sampler"] == "dpm++" and e["steps"] == 5 for e in rows)

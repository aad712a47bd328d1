"""Negative log-likelihood in bits per dimension: the variational bound of a trained DDPM.

Ho et al. 2020, Eq. 5, evaluated as Nichol & Dhariwal 2021 do (improved-diffusion's
`calc_bpd_loop`):

    L = L_T + sum_{t>=1} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))                         the prior term
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))       for t >= 1
    L_0     = -log p(x_0 | x_1), a Gaussian discretised to 256 bins

p(x_{t-1} | x_t) is the model as the samplers use it: mean = posterior mean at the predicted x_0
(clipped to [-1, 1]), variance = the posterior variance beta_tilde_t (its log clipped at t = 0).
Timesteps are 0-based here as in the engine: index 0 is the decoder term, index T-1 the last.
Every term is in bits per dimension (nats / ln 2, averaged over the image's dimensions).

The diffusion knows nothing of the network: these functions take a `net(x_t, t, y)` callable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from core.diffusion import GaussianDiffusion

NoiseFn = Callable[[int], torch.Tensor]
LN2 = math.log(2.0)


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats:
    0.5 (logvar2 - logvar1 + e^(logvar1 - logvar2) + (mean1 - mean2)^2 e^-logvar2 - 1)."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) by the tanh approximation 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Page 1977),
    the one improved-diffusion and PixelCNN++ use, so bits/dim compare across codebases."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per element for x on the 256 levels of [-1, 1] (spacing 2/255) under N(mean, e^(2 log_scale))
    integrated over the level's bin [x - 1/255, x + 1/255]; the two edge bins are open to -inf / +inf
    (Ho et al. 2020, Eq. 13). Probabilities are floored at 1e-12 before the log."""
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_upper = approx_standard_normal_cdf(inv_std * (centred + 1.0 / 255.0))
    cdf_lower = approx_standard_normal_cdf(inv_std * (centred - 1.0 / 255.0))
    log_upper = torch.log(cdf_upper.clamp(min=1e-12))  # the bin open to -inf (x = -1)
    log_one_minus_lower = torch.log((1.0 - cdf_lower).clamp(min=1e-12))  # open to +inf (x = +1)
    log_bin = torch.log((cdf_upper - cdf_lower).clamp(min=1e-12))
    return torch.where(x < -0.999, log_upper, torch.where(x > 0.999, log_one_minus_lower, log_bin))


def mean_over_dims(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


def prior_bpd(diffusion: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) per image, bits/dim; q(x_T | x_0) = N(sqrt(abar_T) x_0, 1 - abar_T)."""
    alpha_bar = float(diffusion.np["alpha_bar"][-1])
    mean = math.sqrt(alpha_bar) * x0.double()
    log_var = torch.full_like(mean, math.log(1.0 - alpha_bar))
    return mean_over_dims(normal_kl(mean, log_var, torch.zeros_like(mean), torch.zeros_like(mean))) / LN2


def term_bpd(diffusion: GaussianDiffusion, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
             output: torch.Tensor) -> torch.Tensor:
    """L_{t-1} per image in bits/dim, given the network's output at (x_t, t): the KL between the true
    posterior and the model's p(x_{t-1} | x_t) where t >= 1, the decoder NLL where t = 0."""
    x0, xt = x0.double(), xt.double()
    consts = {k: torch.as_tensor(diffusion.np[k], dtype=torch.float64, device=x0.device)
              for k in ("posterior_mean_coef_x0", "posterior_mean_coef_xt", "posterior_log_var", "sqrt_alpha_bar",
                        "sqrt_one_minus_alpha_bar")}

    def at(name):
        return consts[name][t].reshape(-1, *([1] * (x0.ndim - 1)))

    pred_x0 = _predicted_x0(diffusion.objective, output.double(), xt, at).clamp(-1.0, 1.0)
    log_var = at("posterior_log_var")
    true_mean = at("posterior_mean_coef_x0") * x0 + at("posterior_mean_coef_xt") * xt
    model_mean = at("posterior_mean_coef_x0") * pred_x0 + at("posterior_mean_coef_xt") * xt
    kl = mean_over_dims(normal_kl(true_mean, log_var, model_mean, log_var)) / LN2
    decoder = -mean_over_dims(discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * log_var)) / LN2
    return torch.where(t == 0, decoder, kl)


def _predicted_x0(objective: str, output, xt, at):
    if objective == "eps":
        return (xt - at("sqrt_one_minus_alpha_bar") * output) / at("sqrt_alpha_bar")
    if objective == "x0":
        return output
    return at("sqrt_alpha_bar") * xt - at("sqrt_one_minus_alpha_bar") * output


def seeded_noise(shape, seed: int, device="cpu") -> NoiseFn:
    """noise_fn(t): a standard Gaussian tensor of `shape`, fixed by (seed, t) whatever the order."""
    def noise(t: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + int(t))
        return torch.randn(shape, generator=g).to(device)
    return noise


def stratified_timesteps(num_timesteps: int, k: int, n_images: int, rng: np.random.Generator):
    """(timesteps (n_images, k), weights (k,)): t >= 1 cut into k strata of (nearly) equal size, one
    t drawn uniformly per stratum and image; weight = the stratum's size, so sum_k w_k L_{t_k} is an
    unbiased estimate of sum_{t>=1} L_t."""
    edges = np.unique(np.round(np.linspace(1, num_timesteps, k + 1)).astype(np.int64))
    lows, highs = edges[:-1], edges[1:]
    return rng.integers(lows, highs, size=(n_images, len(lows))), (highs - lows).astype(np.float64)


@dataclass(frozen=True)
class BoundTerms:
    """Bits/dim per image: total = prior + decoder + sum_k weights[k] * kl[:, k]."""

    total: np.ndarray  # (B,)
    prior: np.ndarray  # (B,)
    decoder: np.ndarray  # (B,) L_0
    timesteps: np.ndarray  # (B, K) the t >= 1 whose terms were evaluated
    kl: np.ndarray  # (B, K) L_{t-1} at those t
    weights: np.ndarray  # (K,) how many timesteps each evaluated term stands for (all 1: the full bound)

    @property
    def exact(self) -> bool:
        return bool(np.all(self.weights == 1))


@torch.inference_mode()
def variational_bound(net: Callable, diffusion: GaussianDiffusion, x0: torch.Tensor, labels: torch.Tensor | None = None,
                      noise_fn: NoiseFn | None = None, timesteps: int | None = None, seed: int = 0,
                      max_batch: int = 256, on_progress: Callable[[int], None] | None = None) -> BoundTerms:
    """The bound of every image of `x0` (B, C, H, W in [-1, 1], on the network's device).

    `net(x_t, t, labels)` is the network (EMA weights; conditional nets get the true labels).
    `noise_fn(t)` gives the noise of x_t for the whole batch (default: seeded Gaussian). With
    `timesteps` = K the t >= 1 terms are a stratified, unbiased estimate from K timesteps per image;
    by default all T-1 of them are evaluated. Several timesteps of several images go through the
    network together, up to `max_batch` at a time; `on_progress(n)` is told how many image-timesteps
    each pass did."""
    n, T = x0.shape[0], diffusion.num_timesteps
    noise_fn = noise_fn or seeded_noise(x0.shape, seed, x0.device)
    if timesteps is None or timesteps >= T - 1:
        ts = np.tile(np.arange(1, T), (n, 1))
        weights = np.ones(T - 1)
    else:
        ts, weights = stratified_timesteps(T, timesteps, n, np.random.default_rng(seed))
    pairs = [(i, 0) for i in range(n)] + [(i, int(t)) for i in range(n) for t in ts[i]]
    pairs.sort(key=lambda p: (p[1], p[0]))  # same-t noise is drawn once
    values: dict[tuple[int, int], float] = {}
    cache: dict[int, torch.Tensor] = {}
    for start in range(0, len(pairs), max_batch):
        chunk = pairs[start:start + max_batch]
        for t in {t for _, t in chunk} - set(cache):
            cache[t] = noise_fn(t)
        idx = torch.tensor([i for i, _ in chunk], device=x0.device)
        t_vec = torch.tensor([t for _, t in chunk], device=x0.device)
        noise = torch.stack([cache[t][i] for i, t in chunk])
        xt = diffusion.q_sample(x0[idx], t_vec, noise.to(x0.dtype))
        out = net(xt, t_vec, labels[idx] if labels is not None else None)
        for (i, t), v in zip(chunk, term_bpd(diffusion, x0[idx], xt, t_vec, out).tolist()):
            values[(i, t)] = v
        for t in [t for t in cache if t < chunk[-1][1]]:
            del cache[t]
        if on_progress:
            on_progress(len(chunk))
    prior = prior_bpd(diffusion, x0).cpu().numpy()
    decoder = np.array([values[(i, 0)] for i in range(n)])
    kl = np.array([[values[(i, int(t))] for t in ts[i]] for i in range(n)])
    total = prior + decoder + kl @ weights
    return BoundTerms(total, prior, decoder, ts, kl, weights)

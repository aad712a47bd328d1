"""Reverse-process samplers: DDPM ancestral sampling and DDIM, with classifier-free guidance."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from core.diffusion.process import GaussianDiffusion, extract

# (x_t, t, labels or None) -> network output
NetFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def guided(net: NetFn, labels: torch.Tensor | None, guidance: float, null_class: int | None) -> Callable:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6): (1 + w) f(x, c) - w f(x, null).

    All three objectives are affine in the network output for fixed x_t, so mixing outputs equals
    mixing the implied eps. w = 0 is plain conditional sampling.
    """
    if labels is None or guidance == 0 or null_class is None:
        return lambda x, t: net(x, t, labels)

    def fn(x, t):
        both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, torch.full_like(labels, null_class)]))
        cond, uncond = both.chunk(2)
        return (1 + guidance) * cond - guidance * uncond

    return fn


@torch.no_grad()
def ddpm_sample(
    diffusion: GaussianDiffusion, model_fn: Callable, shape, generator: torch.Generator | None = None,
    device="cpu", clip: bool = True, steps: int | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Algorithm 2 (ancestral sampling) with the posterior variance beta_tilde; no noise at t = 0.

    With `steps` < T the chain is respaced (Nichol & Dhariwal 2021, Sec. 4) onto evenly spaced
    timesteps, each step using the betas implied by the kept alpha_bar values.
    Yields (t, x_t after the step, predicted x_0) for every step, last one the final sample.
    """
    T = diffusion.num_timesteps
    kept = respaced_timesteps(T, steps or T)
    sub = diffusion if len(kept) == T else _respaced(diffusion, kept)
    x = torch.randn(shape, generator=generator, device=device)
    for i in reversed(range(len(kept))):
        t_sub = torch.full((shape[0],), i, device=device, dtype=torch.long)
        t_model = torch.full((shape[0],), int(kept[i]), device=device, dtype=torch.long)
        x0, _ = sub.predict_x0_eps(model_fn(x, t_model).float(), x, t_sub, clip)
        mean, log_var = sub.q_posterior(x0, x, t_sub)
        if i > 0:
            noise = torch.randn(shape, generator=generator, device=device)
            x = mean + torch.exp(0.5 * log_var) * noise
        else:
            x = mean
        yield int(kept[i]), x, x0


@torch.no_grad()
def ddim_sample(
    diffusion: GaussianDiffusion, model_fn: Callable, shape, steps: int, eta: float = 0.0,
    generator: torch.Generator | None = None, device="cpu", clip: bool = True,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Song et al. 2021, Eq. 12: x_{t'} = sqrt(a') x0 + sqrt(1 - a' - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - a')/(1 - a)) sqrt(1 - a/a') (Eq. 16), over S evenly spaced timesteps."""
    kept = respaced_timesteps(diffusion.num_timesteps, steps)
    alpha_bar = diffusion.c("alpha_bar", torch.empty(0, device=device))
    x = torch.randn(shape, generator=generator, device=device)
    for i in reversed(range(len(kept))):
        t = torch.full((shape[0],), int(kept[i]), device=device, dtype=torch.long)
        x0, eps = diffusion.predict_x0_eps(model_fn(x, t).float(), x, t, clip)
        a = extract(alpha_bar, t, x.ndim)
        if i == 0:
            x = x0
        else:
            a_prev = extract(alpha_bar, torch.full_like(t, int(kept[i - 1])), x.ndim)
            sigma = eta * torch.sqrt((1 - a_prev) / (1 - a)) * torch.sqrt(1 - a / a_prev)
            x = a_prev.sqrt() * x0 + torch.sqrt((1 - a_prev - sigma**2).clamp(min=0)) * eps
            if eta > 0:
                x = x + sigma * torch.randn(shape, generator=generator, device=device)
        yield int(kept[i]), x, x0


def respaced_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """`steps` distinct timesteps evenly spread over 0..T-1, ascending, always including 0 and T-1."""
    steps = max(1, min(steps, num_timesteps))
    return np.unique(np.round(np.linspace(0, num_timesteps - 1, steps)).astype(np.int64))


def _respaced(diffusion: GaussianDiffusion, kept: np.ndarray) -> GaussianDiffusion:
    """A diffusion over the kept timesteps: beta_i = 1 - alpha_bar[k_i] / alpha_bar[k_{i-1}]."""
    alpha_bar = diffusion.np["alpha_bar"][kept]
    betas = 1.0 - alpha_bar / np.append(1.0, alpha_bar[:-1])
    return GaussianDiffusion(betas, diffusion.objective, diffusion.loss_type)

"""The Gaussian forward process, its posterior, parameterisations and training loss.

Notation follows Ho et al. 2020 ("DDPM"): alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s.
Timesteps are 0-based indices 0..T-1 into the schedule arrays.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] reshaped to broadcast over a batch of `ndim`-dimensional images."""
    return values.gather(0, t).reshape(-1, *([1] * (ndim - 1)))


class GaussianDiffusion:
    """Schedule-dependent constants and the closed forms built from them.

    Knows nothing of the network: every method that needs predictions takes them as tensors,
    or a `model_fn(x_t, t) -> output` callable.
    """

    def __init__(self, betas: np.ndarray, objective: str = "eps", loss: str = "l2"):
        betas = np.asarray(betas, dtype=np.float64)
        assert betas.ndim == 1 and (betas > 0).all() and (betas < 1).all()
        self.num_timesteps = len(betas)
        self.objective = objective
        self.loss_type = loss
        alphas = 1.0 - betas
        alpha_bar = np.cumprod(alphas)
        alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
        # Eq. 7: posterior q(x_{t-1} | x_t, x_0) = N(mean, beta_tilde)
        posterior_var = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        consts = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "sqrt_alpha_bar": np.sqrt(alpha_bar),
            "sqrt_one_minus_alpha_bar": np.sqrt(1.0 - alpha_bar),
            "posterior_var": posterior_var,
            # beta_tilde_0 is 0: borrow beta_tilde_1 so the log stays finite (as improved-diffusion)
            "posterior_log_var": np.log(np.append(posterior_var[1], posterior_var[1:])),
            "posterior_mean_coef_x0": betas * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar),
            "posterior_mean_coef_xt": (1.0 - alpha_bar_prev) * np.sqrt(alphas) / (1.0 - alpha_bar),
        }
        self.np = consts
        self._tensors: dict[tuple, dict[str, torch.Tensor]] = {}

    # float32 copies on the device the batch lives on, made once per device
    def c(self, name: str, like: torch.Tensor) -> torch.Tensor:
        key = (like.device,)
        if key not in self._tensors:
            self._tensors[key] = {
                k: torch.as_tensor(v, dtype=torch.float32, device=like.device) for k, v in self.np.items()
            }
        return self._tensors[key][name]

    def _at(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return extract(self.c(name, x), t, x.ndim)

    # ---- forward process ---------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Eq. 4: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
        return self._at("sqrt_alpha_bar", t, x0) * x0 + self._at("sqrt_one_minus_alpha_bar", t, x0) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Eq. 6-7: mean and log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._at("posterior_mean_coef_x0", t, xt) * x0 + self._at("posterior_mean_coef_xt", t, xt) * xt
        return mean, self._at("posterior_log_var", t, xt)

    # ---- parameterisations ---------------------------------------------------------------
    def x0_from_eps(self, xt, t, eps):
        """Invert Eq. 4: x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)."""
        return (xt - self._at("sqrt_one_minus_alpha_bar", t, xt) * eps) / self._at("sqrt_alpha_bar", t, xt)

    def eps_from_x0(self, xt, t, x0):
        """eps = (x_t - sqrt(alpha_bar) x_0) / sqrt(1 - alpha_bar)."""
        return (xt - self._at("sqrt_alpha_bar", t, xt) * x0) / self._at("sqrt_one_minus_alpha_bar", t, xt)

    def v_from(self, x0, t, eps):
        """Salimans & Ho 2022, Sec. 4: v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0."""
        return self._at("sqrt_alpha_bar", t, x0) * eps - self._at("sqrt_one_minus_alpha_bar", t, x0) * x0

    def x0_from_v(self, xt, t, v):
        """x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v."""
        return self._at("sqrt_alpha_bar", t, xt) * xt - self._at("sqrt_one_minus_alpha_bar", t, xt) * v

    def predict_x0_eps(self, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, clip: bool):
        """(x_0, eps) implied by a network output under this objective; x_0 optionally clipped to [-1, 1]."""
        if self.objective == "eps":
            x0 = self.x0_from_eps(xt, t, output)
        elif self.objective == "x0":
            x0 = output
        else:
            x0 = self.x0_from_v(xt, t, output)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        if self.objective == "eps" and not clip:
            return x0, output
        return x0, self.eps_from_x0(xt, t, x0)

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network should output for (x_0, t, eps) under this objective."""
        if self.objective == "eps":
            return noise
        if self.objective == "x0":
            return x0
        return self.v_from(x0, t, noise)

    # ---- training ---------------------------------------------------------------------------
    def sample_timesteps(self, batch: int, device, generator=None) -> torch.Tensor:
        """t ~ Uniform{0..T-1} (Algorithm 1)."""
        return torch.randint(0, self.num_timesteps, (batch,), device=device, generator=generator)

    def training_loss(self, model_fn: ModelFn, x0: torch.Tensor, t=None, noise=None) -> torch.Tensor:
        """Algorithm 1: mean loss between the network output at (x_t, t) and the objective's target."""
        if t is None:
            t = self.sample_timesteps(x0.shape[0], x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        output = model_fn(self.q_sample(x0, t, noise), t)
        return regression_loss(output.float(), self.target(x0, t, noise), self.loss_type)


def regression_loss(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean l2 (the simplified objective of Ho et al. Eq. 14), l1 or Huber (delta 1) loss."""
    if kind == "l2":
        return F.mse_loss(output, target)
    if kind == "l1":
        return F.l1_loss(output, target)
    return F.smooth_l1_loss(output, target, beta=1.0)

"""Noise schedules beta_1..beta_T, computed in float64.

The linear, quadratic and sigmoid schedules scale their end points by 1000/T so that any T
covers the same noise range; for very short chains (T < 50) that would exceed 1, so every
schedule is clipped at MAX_BETA like the cosine one.
"""

from __future__ import annotations

import math

import numpy as np


def linear_betas(timesteps: int) -> np.ndarray:
    """Ho et al. 2020 (Sec. 4): beta linear from 1e-4 to 0.02 at T=1000, scaled by 1000/T."""
    scale = 1000.0 / timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64)


def quadratic_betas(timesteps: int) -> np.ndarray:
    """sqrt(beta) linear between the linear schedule's end points, then squared. Its betas stay small,
    so sqrt(alpha_bar_T) is 0.027 at T=1000: 2.7% of the signal is left at the last step, while
    sampling starts from pure noise (the other schedules leave 0.6% or less)."""
    scale = 1000.0 / timesteps
    return np.linspace(math.sqrt(scale * 1e-4), math.sqrt(scale * 0.02), timesteps, dtype=np.float64) ** 2


def sigmoid_betas(timesteps: int) -> np.ndarray:
    """GeoDiff's beta-sigmoid (Xu et al. 2022): beta itself follows a sigmoid of linspace(-6, 6),
    mapped onto the linear schedule's range. Not the alpha-bar sigmoid of `sigmoid_chen_betas`."""
    scale = 1000.0 / timesteps
    lo, hi = scale * 1e-4, scale * 0.02
    s = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, timesteps, dtype=np.float64)))
    return s * (hi - lo) + lo


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal 2021, Eq. 17: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) * pi/2);
    beta_t = 1 - alpha_bar(t)/alpha_bar(t-1), clipped at max_beta."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    alpha_bar = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return np.clip(betas, 0.0, max_beta)


def sigmoid_chen_betas(timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> np.ndarray:
    """Jabri et al. 2022 / Chen 2023 ("On the importance of noise scheduling", Alg. 1): alpha_bar
    itself follows a sigmoid, alpha_bar(t) = (s(end/tau) - s((t (end - start) + start)/tau)) /
    (s(end/tau) - s(start/tau)) with s the logistic function, t in [0, 1]; alpha_bar(1) = 0 (zero
    terminal SNR before the clip). beta_t = 1 - alpha_bar(t)/alpha_bar(t-1), clipped at MAX_BETA."""
    t = np.arange(timesteps + 1, dtype=np.float64) / timesteps

    def logistic(z):
        return 1.0 / (1.0 + np.exp(-z))

    v_start, v_end = logistic(start / tau), logistic(end / tau)
    alpha_bar = (v_end - logistic((t * (end - start) + start) / tau)) / (v_end - v_start)
    with np.errstate(divide="ignore"):
        betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return np.clip(betas, 0.0, MAX_BETA)


MAX_BETA = 0.999

SCHEDULES = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "quadratic": quadratic_betas,
    "sigmoid": sigmoid_betas,
    "sigmoid-chen": sigmoid_chen_betas,
}


def make_betas(name: str, timesteps: int) -> np.ndarray:
    """The betas of schedule `name` for T=`timesteps` steps (float64, shape (T,))."""
    return np.clip(SCHEDULES[name](timesteps), 0.0, MAX_BETA)

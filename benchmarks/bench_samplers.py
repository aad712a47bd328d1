"""How near each sampler lands to the probability-flow ODE's solution in few steps: DPM-Solver++(2M)
and DDIM at 10, 20 and 50 steps against DDIM-1000 (eta 0) from the same noise, T = 1000, linear and
cosine schedules, 16 images of 32x32.

    .venv/bin/python benchmarks/bench_samplers.py

The network is the exact denoiser of N(0, 0.5^2) data plus a fixed random two-layer convolution, as
in tests/test_samplers.py: smooth but not linear, and about a quarter of the pixels end clipped, as
a trained net's do. (A trained demo model was the plan; training one did not fit the shared 2-core
machine's time.) Prints, in grey levels (0..255), the RMSE and the largest difference of each
sampler's images from the reference's. About 3 minutes on 2 shared CPU cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.transforms import to_uint8  # noqa: E402
from core.diffusion import GaussianDiffusion, make_betas  # noqa: E402
from core.samplers import sampler_named  # noqa: E402

SHAPE = (16, 3, 32, 32)
CANDIDATES = [("ddim", 10), ("dpm++", 10), ("ddim", 20), ("dpm++", 20), ("ddim", 50), ("dpm++", 50)]


def perturbed_gaussian_denoiser(diffusion: GaussianDiffusion, std: float = 0.5, hidden: int = 16):
    """eps-output of the exact denoiser of N(0, std^2) data, plus a fixed random convolutional net."""
    g = torch.Generator().manual_seed(0)
    w_in = torch.randn(hidden, 3, 3, 3, generator=g) / 3
    w_out = torch.randn(3, hidden, 3, 3, generator=g) / (3 * hidden**0.5)
    frequencies = torch.randn(hidden, generator=g)

    def net(xt, t):
        a = diffusion.c("alpha_bar", xt)[t].reshape(-1, 1, 1, 1)
        x0 = a.sqrt() * std**2 / (a * std**2 + 1 - a) * xt
        time = torch.sin(frequencies * t[:, None] / 200).reshape(-1, hidden, 1, 1)
        random = F.conv2d(torch.tanh(F.conv2d(xt, w_in, padding=1) + time), w_out, padding=1)
        return diffusion.eps_from_x0(xt, t, x0) + random
    return net


def images(diffusion: GaussianDiffusion, net, sampler: str, steps: int) -> np.ndarray:
    """8-bit images from the same noise (seed 1), as grey levels."""
    chain = sampler_named(sampler).sample(diffusion, net, SHAPE, steps, generator=torch.Generator().manual_seed(1))
    return to_uint8(list(chain)[-1][1]).astype(np.float64)


def main() -> None:
    print("| schedule | sampler | steps | RMSE to DDIM-1000 (grey levels) | largest difference |")
    print("|---|---|---:|---:|---:|")
    for schedule in ("linear", "cosine"):
        diffusion = GaussianDiffusion(make_betas(schedule, 1000))
        net = perturbed_gaussian_denoiser(diffusion)
        reference = images(diffusion, net, "ddim", 1000)
        for sampler, steps in CANDIDATES + [("dpm++", 1000)]:
            gap = images(diffusion, net, sampler, steps) - reference
            print(f"| {schedule} | {sampler} | {steps} | {np.sqrt((gap ** 2).mean()):.2f} | {np.abs(gap).max():.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()

"""How near each sampler lands to the probability-flow ODE's solution in few steps: DPM-Solver++(2M)
and DDIM at 10, 20 and 50 steps against DDIM-1000 (eta 0) from the same noise, T = 1000, linear and
cosine schedules, 16 images of 32x32.

    .venv/bin/python benchmarks/bench_samplers.py [--guidance W] [--device cuda]
    .venv/bin/python benchmarks/bench_samplers.py --weights core/assets/demo_weights.pt

With --weights the network is a trained one instead: the EMA weights of a demo-preset model (its
own schedule and objective, T = 1000), sampled unconditionally.

The network is the exact denoiser of N(0, 0.5^2) data plus a fixed random two-layer convolution, as
in tests/test_samplers.py: smooth but not linear, and about a quarter of the pixels end clipped, as
a trained net's do. With --guidance W the network is class-conditional (it adds
0.05 (y + 1) tanh(x_t) to x_0, y the class or the null class 2) and sampled with classifier-free
guidance W, half the images of each class. (A trained demo model was the plan; training one did
not fit the shared 2-core machine's time.) Prints, in grey levels (0..255), the RMSE and the
largest difference of each sampler's images from the reference's. About 3 minutes on 2 shared CPU
cores, 10 s on a GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.transforms import to_uint8  # noqa: E402
from core.diffusion import GaussianDiffusion, make_betas  # noqa: E402
from core.diffusion.sampling import guided  # noqa: E402
from core.config import DEMO_PRESET, TrainConfig  # noqa: E402
from core.factory import create_model_and_diffusion  # noqa: E402
from core.inference import for_inference  # noqa: E402
from core.samplers import sampler_named  # noqa: E402

SHAPE = (16, 3, 32, 32)
CANDIDATES = [("ddim", 10), ("dpm++", 10), ("ddim", 20), ("dpm++", 20), ("dpm++", 30), ("dpm++", 40), ("ddim", 50), ("dpm++", 50)]


def perturbed_gaussian_denoiser(diffusion: GaussianDiffusion, device="cpu", std: float = 0.5, hidden: int = 16):
    """eps-output of the exact denoiser of N(0, std^2) data, plus a fixed random convolutional net."""
    g = torch.Generator().manual_seed(0)
    w_in = (torch.randn(hidden, 3, 3, 3, generator=g) / 3).to(device)
    w_out = (torch.randn(3, hidden, 3, 3, generator=g) / (3 * hidden**0.5)).to(device)
    frequencies = torch.randn(hidden, generator=g).to(device)

    def net(xt, t):
        a = diffusion.c("alpha_bar", xt)[t].reshape(-1, 1, 1, 1)
        x0 = a.sqrt() * std**2 / (a * std**2 + 1 - a) * xt
        time = torch.sin(frequencies * t[:, None] / 200).reshape(-1, hidden, 1, 1)
        random = F.conv2d(torch.tanh(F.conv2d(xt, w_in, padding=1) + time), w_out, padding=1)
        return diffusion.eps_from_x0(xt, t, x0) + random
    return net


def class_guided(diffusion: GaussianDiffusion, guidance: float, device):
    """The denoiser made class-conditional, under classifier-free guidance, for classes 0, 1, 0, 1..."""
    base = perturbed_gaussian_denoiser(diffusion, device)

    def net(xt, t, y):
        x0 = diffusion.x0_from_eps(xt, t, base(xt, t)) + 0.05 * (y.float().reshape(-1, 1, 1, 1) + 1) * torch.tanh(xt)
        return diffusion.eps_from_x0(xt, t, x0)
    return guided(net, torch.arange(SHAPE[0], device=device) % 2, guidance, null_class=2)


def trained(weights: Path, device) -> tuple[str, GaussianDiffusion, object]:
    """(schedule, diffusion, network output as the samplers call it) of demo-preset EMA weights."""
    stored = torch.load(weights, map_location="cpu", weights_only=True)
    cfg = TrainConfig(**{**DEMO_PRESET, **stored["config"]})
    net, diffusion = create_model_and_diffusion(cfg)
    net.load_state_dict(stored["ema"])
    net = for_inference(net, torch.device(device))
    print(f"{weights}: EMA of step {stored['step']}, {cfg.schedule} schedule, {cfg.objective} objective")
    return cfg.schedule, diffusion, guided(lambda x, t, y: net(x, t, y), None, 0.0, None)


def images(diffusion: GaussianDiffusion, net, sampler: str, steps: int, device) -> np.ndarray:
    """8-bit images from the same noise (seed 1), as grey levels."""
    generator = torch.Generator(device=device).manual_seed(1)
    chain = sampler_named(sampler).sample(diffusion, net, SHAPE, steps, generator=generator, device=device)
    return to_uint8(list(chain)[-1][1]).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", type=Path, default=None, help="a trained demo-preset network's weights")
    args = parser.parse_args()
    if args.weights is not None and args.guidance is not None:
        parser.error("--guidance goes with the made-up denoiser; the demo weights are unconditional")
    setups = [trained(args.weights, args.device)] if args.weights else [
        (schedule, diffusion, perturbed_gaussian_denoiser(diffusion, args.device) if args.guidance is None
         else class_guided(diffusion, args.guidance, args.device))
        for schedule, diffusion in ((s, GaussianDiffusion(make_betas(s, 1000))) for s in ("linear", "cosine"))]
    print("| schedule | sampler | steps | RMSE to DDIM-1000 (grey levels) | largest difference |")
    print("|---|---|---:|---:|---:|")
    for schedule, diffusion, net in setups:
        reference = images(diffusion, net, "ddim", 1000, args.device)
        for sampler, steps in CANDIDATES + [("dpm++", 1000)]:
            gap = images(diffusion, net, sampler, steps, args.device) - reference
            print(f"| {schedule} | {sampler} | {steps} | {np.sqrt((gap ** 2).mean()):.2f} | {np.abs(gap).max():.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()

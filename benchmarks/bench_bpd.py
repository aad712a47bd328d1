"""Bits/dim throughput: core.evaluate.nll.variational_bound against improved-diffusion's
`calc_bpd_loop` (Nichol & Dhariwal 2021) on the same network, images and noise, in one process.

improved-diffusion is not a dependency: point --improved-diffusion at a checkout of
https://github.com/openai/improved-diffusion (only its gaussian_diffusion, losses and nn modules
are imported). The script checks that both give the same bits/dim per image, then times
alternating rounds and prints image-timesteps per second and the ratio.

    .venv/bin/python benchmarks/bench_bpd.py --improved-diffusion /path/to/improved-diffusion
    python3 benchmarks/bench_bpd.py --improved-diffusion PATH --device cuda --batch 64 --max-batch 1024

On CUDA the noise of every timestep is drawn once onto the GPU first, so neither side waits for it.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import DEMO_PRESET, TrainConfig  # noqa: E402
from core.diffusion import make_betas  # noqa: E402
from core.evaluate.nll import seeded_noise, variational_bound  # noqa: E402
from core.factory import create_model_and_diffusion  # noqa: E402
from core.inference import for_inference  # noqa: E402


def theirs(module_root: Path, betas: np.ndarray):
    sys.path.insert(0, str(module_root))
    import improved_diffusion.gaussian_diffusion as gd

    diffusion = gd.GaussianDiffusion(betas=betas, model_mean_type=gd.ModelMeanType.EPSILON,
                                     model_var_type=gd.ModelVarType.FIXED_SMALL, loss_type=gd.LossType.MSE)
    return gd, diffusion


def their_bpd(gd, diffusion, net, x0, noise_fn):
    """calc_bpd_loop with its per-step torch.randn_like replaced by our noise for that step."""
    order = iter(range(diffusion.num_timesteps - 1, -1, -1))
    real_randn_like = gd.th.randn_like
    gd.th.randn_like = lambda like: noise_fn(next(order)).to(like)
    try:
        return diffusion.calc_bpd_loop(lambda x, t: net(x, t), x0)["total_bpd"].double().cpu().numpy()
    finally:
        gd.th.randn_like = real_randn_like


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--improved-diffusion", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=64, help="our image-timesteps per network pass")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = TrainConfig(**dict(DEMO_PRESET, objective="eps", timesteps=args.timesteps)).validate()
    device = torch.device(args.device)
    net, ours = create_model_and_diffusion(cfg)  # the bound uses its schedule and objective, not its loss
    net = net.eval().to(device)
    for p in net.parameters():  # a network that is not the zero-initialised identity of a fresh U-Net
        p.data.add_(torch.randn_like(p) * 0.02)
    betas = make_betas(cfg.schedule, cfg.timesteps)
    gd, their_diffusion = theirs(args.improved_diffusion, betas)
    x0 = torch.rand(args.batch, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1))
    x0 = ((x0 * 255).round() / 127.5 - 1).to(device)
    noise = seeded_noise(x0.shape, seed=0)
    if device.type == "cuda":
        table = torch.stack([noise(t) for t in range(cfg.timesteps)]).to(device)
        noise = table.__getitem__

    with torch.no_grad():
        reference = their_bpd(gd, their_diffusion, net, x0, noise)
    our_net = for_inference(copy.deepcopy(net), device)  # what core.inference.load_run_model gives
    mine = variational_bound(lambda x, t, y: our_net(x, t), ours, x0, noise_fn=noise, max_batch=args.max_batch).total
    print(f"bits/dim per image, improved-diffusion vs ours: max |difference| {np.abs(reference - mine).max():.2e} "
          f"(mean {reference.mean():.4f} vs {mine.mean():.4f})")

    work = args.batch * cfg.timesteps
    rates = {"improved-diffusion": [], "ours": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        with torch.no_grad():
            their_bpd(gd, their_diffusion, net, x0, noise)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates["improved-diffusion"].append(work / (time.perf_counter() - start))
        start = time.perf_counter()
        variational_bound(lambda x, t, y: our_net(x, t), ours, x0, noise_fn=noise, max_batch=args.max_batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates["ours"].append(work / (time.perf_counter() - start))
    for name, values in rates.items():
        print(f"{name:<20} {statistics.median(values):8.1f} image-timesteps/s  (rounds: "
              f"{', '.join(f'{v:.1f}' for v in values)})")
    print(f"ratio ours / improved-diffusion: {statistics.median(rates['ours']) / statistics.median(rates['improved-diffusion']):.2f}x "
          f"(batch {args.batch}, T {cfg.timesteps}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})")


if __name__ == "__main__":
    main()

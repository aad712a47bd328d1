"""Model FLOP utilisation of one training step on a GPU, as the trainer takes it today and with the
changes issue 22 proposes, side by side in one process:

  eager          today's step: bf16 autocast, channels-last, AdamW (foreach), loss and gradient-norm
                 checks that wait for the GPU every step, EMA update
  eager+fused    the same with fused AdamW and no per-step host sync
  compiled       torch.compile of the U-Net (default mode) on top of eager+fused

FLOPs per step are counted once with torch.utils.flop_counter (forward and backward of the U-Net);
MFU = FLOPs per step x steps per second / the GPU's dense bf16 peak (--peak-tflops).

  python benchmarks/bench_gpu_mfu.py [--peak-tflops 989] [--steps 20] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import TrainConfig  # noqa: E402
from core.diffusion import GaussianDiffusion, make_betas  # noqa: E402
from core.model import build_unet, count_parameters  # noqa: E402

SHAPES = {  # the product's configs at 96 px (gpu_checks.sh's) and at 32 px (train's defaults)
    "96px": dict(image_size=96, dim=64, dim_mults="1,2,4,8", attention="linear", batch_size=64),
    "32px": dict(image_size=32, dim=64, dim_mults="1,2,4", attention="full", batch_size=128),
}


def step_flops(model, diffusion, x, t) -> float:
    """FLOPs of the U-Net's forward and backward pass on this batch (torch's own counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = diffusion.training_loss(lambda xt, tt: model(xt, tt, None), x, t=t)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def make_step(model, net, ema, diffusion, optimizer, sync_every_step: bool):
    def step(x, t):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = diffusion.training_loss(lambda xt, tt: net(xt, tt, None), x, t=t)
        if sync_every_step and not torch.isfinite(loss.detach()):
            return
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if sync_every_step and not torch.isfinite(norm):
            return
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - 0.9995)
    return step


def measure(name: str, shape: dict, variant: str, steps: int, warmup: int, peak: float) -> dict:
    import copy

    cfg = TrainConfig(**{k: v for k, v in shape.items() if k != "batch_size"})
    torch.manual_seed(0)
    model = build_unet(cfg).cuda().to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = GaussianDiffusion(make_betas("cosine", 1000), "v", "l2")
    batch = shape["batch_size"]
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device="cuda").to(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (batch,), device="cuda")
    flops = step_flops(model, diffusion, x, t)
    fused = variant != "eager"
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, fused=fused, foreach=None if fused else True)
    started = time.perf_counter()
    net = torch.compile(model) if variant == "compiled" else model
    step = make_step(model, net, ema, diffusion, optimizer, sync_every_step=variant == "eager")
    for _ in range(warmup):
        step(x, t)
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step(x, t)
    torch.cuda.synchronize()
    per_step = (time.perf_counter() - started) / steps
    row = dict(shape=name, variant=variant, batch=batch, params_m=count_parameters(model) / 1e6,
               gflop_per_step=flops / 1e9, ms_per_step=per_step * 1e3, img_per_s=batch / per_step,
               tflops=flops / per_step / 1e12, mfu=flops / per_step / (peak * 1e12), warmup_s=warm_s,
               peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
    torch.cuda.reset_peak_memory_stats()
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peak-tflops", type=float, default=989.4, help="dense bf16 peak (H100/H200 SXM: 989.4)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--variants", default="eager,eager+fused,compiled")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    torch.backends.cudnn.benchmark = True
    rows = [measure(name, shape, variant, args.steps, args.warmup, args.peak_tflops)
            for name, shape in SHAPES.items() for variant in args.variants.split(",")]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

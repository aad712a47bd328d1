"""Model FLOP utilisation of one training step on a GPU, as the trainer takes it and with
torch.compile in each of its modes, side by side in one process:

  eager          the trainer's step (on CUDA): bf16 autocast, channels-last, its AdamW (fused on CUDA), the loss and
                 gradient-norm check that waits for the GPU every step, EMA update
  compiled       the same with the U-Net under torch.compile (mode "default": Triton kernels)
  compiled-ro    mode "reduce-overhead": the compiled graphs replayed as CUDA graphs
  compiled-mac   mode "max-autotune-no-cudagraphs": convolutions and matmuls autotuned
  compiled-nosync  "compiled" without the per-step wait for the GPU (what that wait costs)

FLOPs per step are counted once with torch.utils.flop_counter (forward and backward of the U-Net);
MFU = FLOPs per step x steps per second / the GPU's dense bf16 peak (--peak-tflops); the script
also measures an 8192^3 bf16 matmul, the highest rate this GPU reaches in practice.

  python benchmarks/bench_gpu_mfu.py [--shapes 96:64,96:256,32:128] [--variants eager,compiled]
                                     [--steps 20] [--jsonl OUT.jsonl] [--device cpu --precision fp32]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import TrainConfig  # noqa: E402
from core.diffusion import GaussianDiffusion, make_betas  # noqa: E402
from core.model import build_unet, count_parameters  # noqa: E402
from core.train.trainer import make_optimizer  # noqa: E402

CONFIGS = {  # the product's configs at 96 px (gpu_checks.sh's) and at 32 px (train's defaults)
    96: dict(image_size=96, dim=64, dim_mults="1,2,4,8", attention="linear"),
    32: dict(image_size=32, dim=64, dim_mults="1,2,4", attention="full"),
}
MODES = {"eager": None, "compiled": "default", "compiled-ro": "reduce-overhead",
         "compiled-mac": "max-autotune-no-cudagraphs", "compiled-nosync": "default"}


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(model, diffusion, x, t, precision: str) -> float:
    """FLOPs of the U-Net's forward and backward pass on this batch (torch's own counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with autocast(x.device, precision):
            loss = diffusion.training_loss(lambda xt, tt: model(xt, tt, None), x, t=t)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def make_step(model, net, ema, diffusion, optimizer, sync_every_step: bool, graphs: bool, precision: str):
    def step(x, t):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        with autocast(x.device, precision):
            loss = diffusion.training_loss(lambda xt, tt: net(xt, tt, None), x, t=t)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if sync_every_step:  # the trainer's one wait per step: loss and norm come back together
            loss_value, norm_value = torch.stack([loss.detach().float(), norm.float()]).tolist()
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                return
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - 0.9995)
    return step


def matmul_tflops() -> float:
    """The rate of an 8192^3 bf16 matmul on random data (median of 20 after 5 warm-ups)."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    times = []
    for i in range(25):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        if i >= 5:
            times.append(start.elapsed_time(end) / 1e3)
    return 2 * 8192**3 / sorted(times)[len(times) // 2] / 1e12


def measure(image_size: int, batch: int, variant: str, steps: int, warmup: int, peak: float,
            device: torch.device, precision: str) -> dict:
    cfg = TrainConfig(**CONFIGS[image_size])
    torch.manual_seed(0)
    model = build_unet(cfg).to(device, memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = GaussianDiffusion(make_betas("cosine", 1000), "v", "l2")
    x = torch.randn(batch, 3, image_size, image_size, device=device).to(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (batch,), device=device)
    flops = step_flops(model, diffusion, x, t, precision)
    optimizer = make_optimizer(model, cfg, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    mode = MODES[variant]
    net = model if mode is None else torch.compile(model, mode=mode)
    step = make_step(model, net, ema, diffusion, optimizer, sync_every_step=variant != "compiled-nosync",
                     graphs=mode == "reduce-overhead", precision=precision)
    for _ in range(warmup):
        step(x, t)
    synchronize(device)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step(x, t)
    synchronize(device)
    per_step = (time.perf_counter() - started) / steps
    return dict(image_size=image_size, variant=variant, batch=batch, params_m=count_parameters(model) / 1e6,
                gflop_per_step=flops / 1e9, ms_per_step=per_step * 1e3, img_per_s=batch / per_step,
                tflops=flops / per_step / 1e12, mfu=flops / per_step / (peak * 1e12), warmup_s=warm_s,
                peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peak-tflops", type=float, default=989.4, help="dense bf16 peak (H100/H200 SXM: 989.4)")
    p.add_argument("--shapes", default="96:64,96:256,32:128", help="image_size:batch pairs")
    p.add_argument("--variants", default="eager,compiled", help=f"any of {', '.join(MODES)}")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--jsonl", type=Path, help="append one JSON line per measurement")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for the trainer's CPU step")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="autocast (default bf16)")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    header = dict(torch=torch.__version__, precision=args.precision)
    if device.type == "cuda":
        header.update(gpu=torch.cuda.get_device_name(), matmul_tflops=round(matmul_tflops(), 1))
    else:
        header.update(cpu_threads=torch.get_num_threads())
    print(json.dumps(header), flush=True)
    rows = []
    for shape in args.shapes.split(","):
        image_size, batch = map(int, shape.split(":"))
        for variant in args.variants.split(","):
            try:
                row = measure(image_size, batch, variant, args.steps, args.warmup, args.peak_tflops, device,
                              args.precision)
            except Exception as exc:  # one mode failing to compile must not lose the others' numbers
                row = dict(image_size=image_size, variant=variant, batch=batch, error=f"{type(exc).__name__}: {exc}"[:400])
            row = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.jsonl:
                with args.jsonl.open("a") as out:
                    out.write(json.dumps({**header, **row}) + "\n")
            torch._dynamo.reset()
    print("\n| px | batch | variant | ms/step | img/s | TFLOP/s | MFU | warm-up s | peak GiB |")
    for r in rows:
        if "error" in r:
            print(f"| {r['image_size']} | {r['batch']} | {r['variant']} | failed: {r['error'][:80]} |")
        else:
            memory = "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.1f}"
            print(f"| {r['image_size']} | {r['batch']} | {r['variant']} | {r['ms_per_step']:.1f} | {r['img_per_s']:.0f} "
                  f"| {r['tflops']:.1f} | {r['mfu']:.1%} | {r['warmup_s']:.0f} | {memory} |")


if __name__ == "__main__":
    main()

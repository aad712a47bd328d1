"""Where a training step's time must go on a GPU: FLOPs, memory traffic and kernel count of one eager
forward + backward of the U-Net, counted op by op on the meta device (nothing is computed, so this
runs on any machine), and the least time each needs at a GPU's peak rates.

Every aten op that is not a view counts as one kernel that reads its tensor inputs and writes its
outputs once; every float tensor counts 2 bytes an element, as in bf16 (under autocast GroupNorm,
softmax and the weights' fp32 masters keep 4, so the true traffic is higher: these are lower bounds). Ops split into the matmul class
(convolutions, matmuls, fused attention), whose FLOPs are what MFU counts, and the rest (GroupNorm,
SiLU, additions, reshapes that copy), which only move memory. torch.compile fuses much of the
second class, so its traffic falls below the eager count.

With --time-convs (CUDA) each distinct convolution of the step is also timed alone, forward and
backward in bf16 channels-last, giving its TFLOP/s and its share of the step.

    python benchmarks/step_traffic.py [--image-size 96] [--batch 64] [--bandwidth-tbs 4.8] [--peak-tflops 989.4]
                                      [--time-convs]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gpu_mfu import CONFIGS, synchronize  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.diffusion import GaussianDiffusion, make_betas  # noqa: E402
from core.model import build_unet  # noqa: E402

MATMUL_CLASS = {"convolution", "convolution_backward", "mm", "bmm", "addmm", "baddbmm",
                "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward"}


class Traffic(TorchDispatchMode):
    """Bytes read and written and kernels launched, by op class and by op."""

    def __init__(self):
        super().__init__()
        self.bytes = collections.Counter()
        self.kernels = collections.Counter()
        self.by_op = collections.Counter()
        self.conv_gflop_by_width = collections.Counter()  # forward + backward, by the narrower of C_in, C_out
        self.conv_shapes = collections.Counter()  # (input shape, weight shape, stride, padding, groups) of forwards

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        moved = sum(t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in tensors)
        name = func.overloadpacket.__name__
        kind = "matmul" if name in MATMUL_CLASS else "other"
        self.bytes[kind] += moved
        self.kernels[kind] += 1
        self.by_op[name] += moved
        if name in ("convolution", "convolution_backward"):
            weight = args[1] if name == "convolution" else args[2]
            grad_or_out = out if name == "convolution" else args[0]
            c_out, c_in_per_group, kh, kw = weight.shape
            forward = 2 * grad_or_out.numel() * c_in_per_group * kh * kw
            self.conv_gflop_by_width[min(c_out, c_in_per_group)] += forward * (1 if name == "convolution" else 2) / 1e9
            if name == "convolution":
                self.conv_shapes[(tuple(args[0].shape), tuple(weight.shape), tuple(args[3]), tuple(args[4]),
                                  args[8])] += 1
        return out


def count(image_size: int, batch: int) -> dict:
    cfg = TrainConfig(**CONFIGS[image_size])
    with torch.device("meta"):
        model = build_unet(cfg).to(memory_format=torch.channels_last)
        x = torch.randn(batch, 3, image_size, image_size).to(memory_format=torch.channels_last)
        t = torch.randint(0, 1000, (batch,))
    diffusion = GaussianDiffusion(make_betas("cosine", 1000), "v", "l2")
    traffic = Traffic()
    with FlopCounterMode(display=False) as flops, traffic:
        loss = diffusion.training_loss(lambda xt, tt: model(xt, tt, None), x, t=t)
        loss.backward()
    return traffic, dict(image_size=image_size, batch=batch, gflop=flops.get_total_flops() / 1e9,
                gb_matmul=traffic.bytes["matmul"] / 1e9, gb_other=traffic.bytes["other"] / 1e9,
                kernels_matmul=traffic.kernels["matmul"], kernels_other=traffic.kernels["other"],
                conv_gflop_by_width={w: round(g) for w, g in sorted(traffic.conv_gflop_by_width.items())},
                top_other_gb={op: round(b / 1e9, 2) for op, b in traffic.by_op.most_common(12)
                              if op not in MATMUL_CLASS})


def time_convolutions(shapes: collections.Counter, device: torch.device, repeats: int = 20) -> list[dict]:
    """Each distinct convolution of the step alone, forward and backward in bf16 channels-last on
    `device`: its ms (median of `repeats`) times how often the step runs it, and its TFLOP/s."""
    import statistics
    import time

    rows = []
    for (x_shape, w_shape, stride, padding, groups), calls in shapes.items():
        x = torch.randn(x_shape, device=device, dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        conv = torch.nn.Conv2d(w_shape[1] * groups, w_shape[0], w_shape[2:], stride, padding, groups=groups)
        conv = conv.to(device, torch.bfloat16, memory_format=torch.channels_last)
        x.requires_grad_(x_shape[1] != 3)
        times = []
        for i in range(repeats + 3):
            synchronize(device)
            start = time.perf_counter()
            conv(x).sum().backward()
            synchronize(device)
            if i >= 3:
                times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        out_numel = conv(x).numel()
        gflop = 3 * 2 * out_numel * w_shape[1] * w_shape[2] * w_shape[3] / 1e9  # forward, grad input, grad weight
        rows.append(dict(input=list(x_shape), weight=list(w_shape), calls=calls, ms=seconds * 1e3,
                         ms_in_step=seconds * 1e3 * calls, tflops=gflop / seconds / 1e3))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=96, choices=sorted(CONFIGS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--bandwidth-tbs", type=float, default=4.8, help="memory bandwidth, TB/s (H200: 4.8)")
    p.add_argument("--peak-tflops", type=float, default=989.4, help="dense bf16 peak, TFLOP/s (H200: 989.4)")
    p.add_argument("--time-convs", action="store_true", help="also time each distinct convolution alone (on CUDA; on a CPU as a smoke test)")
    args = p.parse_args()
    traffic, row = count(args.image_size, args.batch)
    print(json.dumps(row))
    if args.time_convs:
        rows = time_convolutions(traffic.conv_shapes, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        for r in rows:
            print(json.dumps(r))
        print(f"\nthe step's convolutions, each alone: {sum(r['ms_in_step'] for r in rows):.1f} ms "
              "(forward and backward, sum over calls; launch gaps included)")
    ms = lambda gb: gb / args.bandwidth_tbs  # noqa: E731  (GB / (TB/s) = ms)
    print(f"\nleast time per step at {args.peak_tflops:g} TFLOP/s and {args.bandwidth_tbs:g} TB/s "
          f"({args.image_size} px, batch {args.batch}):")
    print(f"  matmul-class FLOPs     {row['gflop'] / args.peak_tflops:7.2f} ms  ({row['gflop']:,.0f} GFLOP)")
    print(f"  matmul-class traffic   {ms(row['gb_matmul']):7.2f} ms  ({row['gb_matmul']:.1f} GB, "
          f"{row['kernels_matmul']} kernels)")
    print(f"  other ops' traffic     {ms(row['gb_other']):7.2f} ms  ({row['gb_other']:.1f} GB, "
          f"{row['kernels_other']} kernels)")


if __name__ == "__main__":
    main()

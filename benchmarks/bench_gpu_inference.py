"""Sampling and bits/dim on a GPU, the U-Net eager and under torch.compile, side by side in one process.

The product's 96 px network (dim 64, mults 1,2,4,8, linear attention; random weights: speed does not
depend on them), bf16 autocast as a bf16 run is sampled and evaluated:
  DDIM-50 sampling of `--n` images (core.generation.generate, 256 per batch), images per second;
  the exact bound over all 1000 timesteps of `--bpd-images` images (core.evaluate.nll.variational_bound,
  `--eval-batch` image-timesteps per network pass), image-timesteps per second.
Each is timed `--rounds` times after one untimed pass (which holds the compile); each mode's
largest difference from the eager results is printed beside its rate.

    python benchmarks/bench_gpu_inference.py [--modes eager,default,reduce-overhead] [--jsonl OUT.jsonl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import TrainConfig  # noqa: E402
from core.evaluate.nll import seeded_noise, variational_bound  # noqa: E402
from core.factory import create_model_and_diffusion  # noqa: E402
from core.generation import generate  # noqa: E402
from core.inference import for_inference  # noqa: E402

CONFIG = dict(image_size=96, dim=64, dim_mults="1,2,4,8", attention="linear")


def timed(fn, rounds: int) -> tuple[float, list[float], object]:
    """(seconds of the untimed first call, seconds of each timed call, the last result)."""
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return first, times, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="eager,default", help="eager and/or torch.compile modes")
    p.add_argument("--n", type=int, default=256, help="images sampled per round")
    p.add_argument("--bpd-images", type=int, default=8)
    p.add_argument("--eval-batch", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jsonl", type=Path)
    args = p.parse_args()
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    cfg = TrainConfig(**CONFIG).validate()
    torch.manual_seed(0)
    model, diffusion = create_model_and_diffusion(cfg)
    for param in model.parameters():  # not the zero-initialised output layer of a fresh U-Net
        param.data.add_(torch.randn_like(param) * 0.02)
    model = for_inference(model, device)
    x0 = ((torch.rand(args.bpd_images, 3, 96, 96, generator=torch.Generator().manual_seed(1)) * 255).round()
          / 127.5 - 1).to(device)
    table = torch.stack([seeded_noise(x0.shape, seed=0)(t) for t in range(diffusion.num_timesteps)]).to(device)
    reference = {}
    rows = []
    for mode in args.modes.split(","):
        net = model if mode == "eager" else torch.compile(model, mode=mode)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            sample = lambda: generate(net, diffusion, args.n, 96, "ddim", 50, seed=0, device=device).images  # noqa: E731
            bound = lambda: variational_bound(lambda x, t, y: net(x, t), diffusion, x0,  # noqa: E731
                                              noise_fn=table.__getitem__, max_batch=args.eval_batch).total
            for what, fn, work in (("ddim50 img/s", sample, args.n),
                                   ("bpd image-timesteps/s", bound, args.bpd_images * diffusion.num_timesteps)):
                try:
                    first, times, result = timed(fn, args.rounds)
                except Exception as exc:  # a mode that fails must not lose the others' numbers
                    row = dict(mode=mode, what=what, error=f"{type(exc).__name__}: {exc}"[:400])
                else:
                    result = torch.as_tensor(result).double()
                    reference.setdefault(what, result)
                    row = dict(mode=mode, what=what, rate=round(work / statistics.median(times), 1),
                               rounds=[round(work / s, 1) for s in times], first_call_s=round(first, 1),
                               max_abs_diff_vs_eager=round(float((result - reference[what]).abs().max()), 4))
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.jsonl:
                    with args.jsonl.open("a") as out:
                        out.write(json.dumps(row) + "\n")
        torch._dynamo.reset()


if __name__ == "__main__":
    main()

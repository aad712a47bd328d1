"""Sampling throughput: ours against lucidrains' denoising-diffusion-pytorch and Hugging Face diffusers,
side by side in one process, on bench_train_speed.py's networks: the matched ones (`--set matched`) or
each library's own defaults (`--set defaults`: ours TrainConfig(), lucidrains Unet(dim=64) with its
GaussianDiffusion's defaults, diffusers its train_unconditional example's UNet2DModel with a linear schedule).

Each contender draws `--n` images from fixed seeds, with random weights (speed does not depend on
them), in eval mode without gradients:
  DDIM-50: ours core.generation.generate (the product's path: channels-last, core.inference), lucidrains
    GaussianDiffusion(sampling_timesteps=50).sample, diffusers DDIMScheduler with 50 steps
    stepped over its UNet2DModel (as its DDIMPipeline does);
  the fast sampler, DPM-Solver++(2M) with `--fast-steps` steps (default 20): ours `--sampler dpm++`,
    diffusers DPMSolverMultistepScheduler (its default algorithm, dpmsolver++ of order 2); lucidrains
    has none.
Rounds alternate the order and wait for a quiet machine as bench_train_speed.py does; the script
reports each one's median images per second over the quiet rounds and the per-round ratios.

    .venv/bin/python benchmarks/bench_sample_speed.py [--n 16] [--rounds 4] [--json]
    python3 benchmarks/bench_sample_speed.py --device cuda --precision bf16 --image-size 96 --n 256
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
from datetime import datetime, timezone
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # lucidrains draws tqdm bars
import bench_train_speed as train_speed  # noqa: E402  puts the project and, where needed, the torchvision stand-in on sys.path
import torch  # noqa: E402

from core.factory import create_model_and_diffusion  # noqa: E402
from core.generation import generate  # noqa: E402
from core.inference import for_inference  # noqa: E402

DEFAULT_JSON = train_speed.HERE / "results" / "sample_speed.json"


def ours(preset: str, image_size: int, device: torch.device, sampler: str, steps: int) -> Callable[[int, int], None]:
    model, diffusion = create_model_and_diffusion(train_speed.ours_config(preset, image_size))
    net = for_inference(model, device)
    return lambda n, seed: generate(net, diffusion, n, image_size, sampler, steps, seed=seed, device=device)


def lucidrains(preset: str, image_size: int, device: torch.device, steps: int) -> Callable[[int, int], None]:
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    if preset == "defaults":  # as its README builds them, DDIM through sampling_timesteps
        diffusion = GaussianDiffusion(Unet(dim=train_speed.DIM), image_size=image_size, sampling_timesteps=steps)
    else:
        model = Unet(dim=train_speed.DIM, dim_mults=train_speed.DIM_MULTS,
                     full_attn=(False,) * len(train_speed.DIM_MULTS), dropout=0.0)
        diffusion = GaussianDiffusion(model, image_size=image_size, timesteps=train_speed.TIMESTEPS,
                                      objective="pred_noise", beta_schedule="cosine", sampling_timesteps=steps)
    diffusion = diffusion.to(device).eval()

    def draw(n, seed):
        torch.manual_seed(seed)
        diffusion.sample(batch_size=n)
    return draw


def diffusers(preset: str, image_size: int, device: torch.device, scheduler_name: str,
              steps: int) -> Callable[[int, int], None]:
    import diffusers as hf

    model = train_speed.diffusers_unet(preset, image_size).to(device).eval()
    scheduler = getattr(hf, scheduler_name)(num_train_timesteps=train_speed.TIMESTEPS,
                                            beta_schedule="linear" if preset == "defaults" else "squaredcos_cap_v2")

    def draw(n, seed):
        generator = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(n, 3, image_size, image_size, generator=generator, device=device)
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t).sample, t, x).prev_sample
    return draw


def contenders(preset: str, image_size: int, device: torch.device, fast_steps: int) -> dict:
    return {
        "ours ddim-50": lambda: ours(preset, image_size, device, "ddim", 50),
        "lucidrains ddim-50": lambda: lucidrains(preset, image_size, device, 50),
        "diffusers ddim-50": lambda: diffusers(preset, image_size, device, "DDIMScheduler", 50),
        f"ours dpm++-{fast_steps}": lambda: ours(preset, image_size, device, "dpm++", fast_steps),
        f"diffusers dpm++-{fast_steps}": lambda: diffusers(preset, image_size, device, "DPMSolverMultistepScheduler",
                                                           fast_steps),
    }


class Runner:
    """One contender and its timings (the attributes bench_train_speed's clean_rounds reads)."""

    def __init__(self, name: str, build, device: torch.device, autocast):
        torch.manual_seed(0)
        self.name, self.draw, self.device, self.autocast = name, build(), device, autocast
        self.rates, self.others, self.discarded = [], [], 0

    def images_per_s(self, n: int, seed: int) -> tuple[float, float | None]:
        def work():
            with torch.no_grad(), self.autocast():
                self.draw(n, seed)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

        wall, other = train_speed.timed_beside_others(work)
        return n / wall, other

    def timed(self, n: int, seed: int, args) -> None:
        rate, other, discarded = train_speed.quiet_timing(lambda: self.images_per_s(n, seed), args.max_other,
                                                          args.retries, args.max_wait)
        self.rates.append(rate)
        self.others.append(other)
        self.discarded += discarded


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", dest="which", choices=("matched", "defaults"), default="matched",
                   help="matched: bench_train_speed's matched networks; defaults: each library's own network")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--n", type=int, default=16, help="images drawn per timing (one batch)")
    p.add_argument("--fast-steps", type=int, default=20, help="steps of the DPM-Solver++ contenders")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: every contender under the same CUDA bf16 autocast")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--max-other", type=float, default=0.05)
    p.add_argument("--max-wait", type=float, default=30.0)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--json", nargs="?", const=DEFAULT_JSON, type=train_speed.Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.precision == "bf16" \
        else contextlib.nullcontext
    runners = [Runner(name, build, device, autocast) for name, build in
               contenders(args.which, args.image_size, device, args.fast_steps).items()]
    print(f"torch {torch.__version__}, set {args.which}, {device}, {args.precision}, {args.image_size} px, {args.threads} threads, "
          f"{args.n} images per timing, " + ", ".join(f"{k} {v}" for k, v in train_speed.library_versions().items()))
    for r in runners:  # warm-up: one small draw each
        r.images_per_s(2, seed=0)
    for i in range(args.rounds):
        for r in runners if i % 2 == 0 else runners[::-1]:
            r.timed(args.n, seed=i, args=args)
        print(f"round {i + 1}/{args.rounds}: " + ", ".join(f"{r.name} {r.rates[-1]:.2f}" for r in runners), flush=True)
    kept = train_speed.clean_rounds(runners, args.max_other) or list(range(args.rounds))
    med = {r.name: statistics.median(r.rates[i] for i in kept) for r in runners}
    pairs = [(runners[0], runners[1]), (runners[0], runners[2]), (runners[3], runners[4])]
    print(f"\nquiet rounds: {len(kept)} of {args.rounds}\n\n| sampler | median img/s | min-max |\n|---|---:|---:|")
    for r in runners:
        rates = [r.rates[i] for i in kept]
        print(f"| {r.name} | {med[r.name]:.2f} | {min(rates):.2f}-{max(rates):.2f} |")
    ratios = {}
    for a, b in pairs:
        per_round = [x for i, x in enumerate(train_speed.round_ratios(a.rates, b.rates)) if i in kept]
        ratios[f"{a.name} / {b.name}"] = dict(of_medians=round(med[a.name] / med[b.name], 3),
                                              rounds=[round(x, 3) for x in per_round])
        print(f"{a.name} / {b.name}: {med[a.name] / med[b.name]:.2f}x (rounds {min(per_round):.2f}-{max(per_round):.2f})")
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": args.threads,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
        "versions": {"torch": torch.__version__, **train_speed.library_versions()},
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "img_per_s": {r.name: [round(x, 3) for x in r.rates] for r in runners},
        "clean_rounds": kept,
        "median_img_per_s": {k: round(v, 3) for k, v in med.items()},
        "ratios": ratios,
        "discarded_timings": {r.name: r.discarded for r in runners},
    }
    if args.json:
        train_speed.save_json(args.json, record)
        print(f"appended to {args.json}")
    return record


if __name__ == "__main__":
    main()

"""Training throughput: our UNet + GaussianDiffusion against lucidrains' denoising-diffusion-pytorch.

Both train at one matched config: 32x32x3 images (`--image-size`), dim 64, dim_mults (1, 2, 4, 8), 2 res blocks per
level, linear attention at every level and full attention in the middle, eps objective (lucidrains'
'pred_noise'), cosine schedule with 1000 steps, AdamW, batch 16, no dropout, fp32. Images are a fixed
random batch (data loading is not measured). A training step is zero_grad, loss, backward, step.
On CUDA (`--device cuda`) `--precision bf16` runs both forward passes under the same bf16 autocast,
and each timing ends with a device synchronize.

Both models live in this one process. After warm-up steps each, the script runs `--rounds` rounds;
in every round each model trains `--steps` steps, the order swapping from round to round (ABBA), so
slow drift of the machine hits both alike. A timing during which other processes kept more than
`--max-other` of the cores busy (read from /proc/stat) is redone, up to `--retries` times, and
each timing first waits (up to `--max-wait` s) for such a quiet moment. It reports each model's
median img/s over the rounds and the ratio ours / theirs.

lucidrains' package is a benchmark-only dependency (see BENCHMARKS.md for the install command). It
imports torchvision on load, which cannot import beside the CPU torch wheel; a stand-in from
benchmarks/stubs/ is put first on sys.path, as its Unet and GaussianDiffusion never use torchvision.

    .venv/bin/python benchmarks/bench_train_speed.py --json
    python3 benchmarks/bench_train_speed.py --device cuda --precision bf16 --image-size 96 --batch-size 64 \
        --max-wait 0 --retries 0 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "stubs")]

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from core.diffusion import GaussianDiffusion, make_betas  # noqa: E402
from core.model import UNet, count_parameters  # noqa: E402

DEFAULT_JSON = HERE / "results" / "train_speed.json"
DIM, DIM_MULTS, RES_BLOCKS, TIMESTEPS, LR = 64, (1, 2, 4, 8), 2, 1000, 1e-4


def build_ours(image_size: int, device: torch.device):
    """A step function for our UNet; x0 in [-1, 1]."""
    torch.manual_seed(0)
    levels = tuple(image_size // 2**i for i in range(len(DIM_MULTS)))
    model = UNet(image_size=image_size, dim=DIM, dim_mults=DIM_MULTS, res_blocks=RES_BLOCKS,
                 attention="linear", attn_resolutions=levels, dropout=0.0).to(device)
    diffusion = GaussianDiffusion(make_betas("cosine", TIMESTEPS), objective="eps", loss="l2")
    return model, lambda x0: diffusion.training_loss(lambda x, t: model(x, t), x0)


def build_theirs(image_size: int, device: torch.device):
    """A step function for lucidrains' Unet; it rescales [0, 1] images to [-1, 1] itself."""
    from denoising_diffusion_pytorch import GaussianDiffusion as LGaussianDiffusion, Unet

    torch.manual_seed(0)
    # 2 res blocks per level are fixed in its Unet; full_attn all False = linear attention at every
    # level (its default makes the last level full); its middle is always full attention.
    model = Unet(dim=DIM, dim_mults=DIM_MULTS, full_attn=(False,) * len(DIM_MULTS), dropout=0.0)
    diffusion = LGaussianDiffusion(model, image_size=image_size, timesteps=TIMESTEPS,
                                   objective="pred_noise", beta_schedule="cosine").to(device)
    return model, lambda x0: diffusion((x0 + 1) / 2)


def busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy, steal included (Linux /proc/stat), else None."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait


class Runner:
    """One model, its optimizer and its timings."""

    def __init__(self, name: str, build, batch: torch.Tensor, precision: str):
        self.name, self.batch = name, batch
        self.rates, self.others, self.discarded = [], [], 0
        self.model, loss_fn = build(batch.shape[-1], batch.device)
        self.model.train()
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        self.loss_fn = loss_fn if dtype is None else self.autocast(loss_fn, batch.device.type, dtype)
        self.params = count_parameters(self.model)
        with FlopCounterMode(display=False) as counter:  # matmuls and convolutions of one step
            self.loss_fn(batch).backward()
        self.gflop = counter.get_total_flops() / 1e9
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR)

    @staticmethod
    def autocast(loss_fn, device_type: str, dtype: torch.dtype):
        def run(x0):
            with torch.autocast(device_type, dtype=dtype):
                return loss_fn(x0)
        return run

    def synchronize(self) -> None:
        if self.batch.is_cuda:
            torch.cuda.synchronize(self.batch.device)

    def steps(self, n: int) -> tuple[float, float | None]:
        """Train n steps; return img/s and the share of all cores that other processes used meanwhile."""
        self.synchronize()
        busy0, own0, start = busy_cpu_s(), time.process_time(), time.perf_counter()
        for _ in range(n):
            self.opt.zero_grad(set_to_none=True)
            self.loss_fn(self.batch).backward()
            self.opt.step()
        self.synchronize()
        wall, busy1 = time.perf_counter() - start, busy_cpu_s()
        other = None if busy0 is None else max(0.0, busy1 - busy0 - (time.process_time() - own0))
        return n * self.batch.shape[0] / wall, None if other is None else other / (wall * os.cpu_count())

    def timed(self, n: int, max_other: float, retries: int, max_wait: float) -> None:
        """Time n steps once the machine is quiet; redo (up to `retries` times) if others got busy."""
        for attempt in range(retries + 1):
            wait_quiet(max_other, max_wait)
            rate, other = self.steps(n)
            if other is None or other <= max_other or attempt == retries:
                break
            self.discarded += 1
        self.rates.append(rate)
        self.others.append(other)


def wait_quiet(max_other: float, max_wait: float, probe: float = 0.5) -> None:
    """Sleep until other processes use at most `max_other` of the cores over `probe` s (max_wait s at most)."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        busy0, own0 = busy_cpu_s(), time.process_time()
        if busy0 is None:
            return
        time.sleep(probe)
        if busy_cpu_s() - busy0 - (time.process_time() - own0) <= max_other * probe * os.cpu_count():
            return


def save_json(path: Path, record: dict) -> None:
    """Append `record` to the JSON list at `path` (written through a .tmp file, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(path.read_text()) if path.exists() else []
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records + [record], indent=2) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=12, help="timed rounds (default 12)")
    p.add_argument("--steps", type=int, default=4, help="steps per model per round (default 4)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (default 3)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="autocast dtype (default fp32)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help=f"torch intra-op threads (default torch's: {torch.get_num_threads()})")
    p.add_argument("--max-other", type=float, default=0.05,
                   help="redo a timing while other processes used more than this share of the cores (0.05)")
    p.add_argument("--retries", type=int, default=3, help="redos per timing at most (default 3)")
    p.add_argument("--max-wait", type=float, default=60.0,
                   help="seconds to wait for a quiet machine before each timing at most (default 60)")
    p.add_argument("--json", nargs="?", const=DEFAULT_JSON, type=Path, default=None, metavar="PATH",
                   help=f"append the result to a JSON list (default path {DEFAULT_JSON.relative_to(HERE.parent)})")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    x0 = (torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1).to(device)
    runners = [Runner("ours", build_ours, x0, args.precision), Runner("lucidrains", build_theirs, x0, args.precision)]
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"torch {torch.__version__}{gpu}, {args.precision}, {args.image_size} px, {args.threads} threads, batch {args.batch_size}, "
          f"denoising-diffusion-pytorch {version('denoising-diffusion-pytorch')}")
    for r in runners:
        print(f"{r.name:>10}: {r.params:,} parameters, {r.gflop:.1f} GFLOP per step (forward + backward)")

    for r in runners:
        r.steps(args.warmup)
    for i in range(args.rounds):
        for r in runners if i % 2 == 0 else runners[::-1]:
            r.timed(args.steps, args.max_other, args.retries, args.max_wait)
        print(f"round {i + 1:>2}/{args.rounds}: " + ", ".join(
            f"{r.name} {r.rates[-1]:5.2f} img/s" + ("" if r.others[-1] is None else f" (others {r.others[-1]:.0%})")
            for r in runners))

    med = {r.name: statistics.median(r.rates) for r in runners}
    ratio = med["ours"] / med["lucidrains"]
    print("\n| model | parameters | GFLOP/step | median img/s | min-max img/s |\n|---|---:|---:|---:|---:|")
    for r in runners:
        print(f"| {r.name} | {r.params / 1e6:.2f} M | {r.gflop:.0f} | {med[r.name]:.2f} "
              f"| {min(r.rates):.2f}-{max(r.rates):.2f} |")
    print("timings redone because other processes were busy: "
          + ", ".join(f"{r.name} {r.discarded}" for r in runners))
    goal = f" (goal on CPU >= 1.3x: {'met' if ratio >= 1.3 else 'NOT met'})" if device.type == "cpu" else ""
    print(f"ratio ours / lucidrains (median img/s): {ratio:.2f}x{goal}")

    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "threads": args.threads,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
        "versions": {"torch": torch.__version__, "denoising-diffusion-pytorch": version("denoising-diffusion-pytorch")},
        "config": {"image_size": args.image_size, "precision": args.precision, "dim": DIM, "dim_mults": list(DIM_MULTS), "res_blocks": RES_BLOCKS,
                   "batch_size": args.batch_size, "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup,
                   "max_other": args.max_other, "retries": args.retries, "max_wait": args.max_wait},
        "params": {r.name: r.params for r in runners},
        "gflop_per_step": {r.name: round(r.gflop, 2) for r in runners},
        "img_per_s": {r.name: [round(x, 3) for x in r.rates] for r in runners},
        "median_img_per_s": {k: round(v, 3) for k, v in med.items()},
        "ratio": round(ratio, 3),
        "other_cpu_share": {r.name: [None if x is None else round(x, 3) for x in r.others] for r in runners},
        "discarded_timings": {r.name: r.discarded for r in runners},
    }
    if args.json:
        save_json(args.json, record)
        print(f"appended to {args.json}")
    return record


if __name__ == "__main__":
    main()

"""Training throughput: ours against lucidrains' denoising-diffusion-pytorch and Hugging Face diffusers.

`--set matched` (default): the three at one layout: 32x32x3 images (`--image-size`), widths 64, 128, 256, 512,
attention at the lower levels and in the middle (ours and lucidrains: linear at every level, the same
layout; diffusers: full attention at 16, 8, 4 px, see `diffusers_unet`), eps objective, cosine
schedule with 1000 steps, AdamW, batch 16, fp32. `--set defaults`: each library as a user runs it by
default (ours: TrainConfig(); lucidrains: Unet(dim=64); diffusers: its train_unconditional example's
UNet2DModel and linear DDPMScheduler). `--set options`: our matched network with the trainer's speed
options (AdamW kernels, EMA update, bf16 autocast, channels-last), each against the trainer's step
before issue 22 (fp32, NCHW, a Python loop over the tensors in AdamW and the EMA).
Images are a fixed random batch (data loading is not measured). A training step is zero_grad,
loss, backward, AdamW step (and the EMA update in `options`). Ours uses the trainer's AdamW
(core.train.trainer.make_optimizer); the others torch's default AdamW, as their own trainers do.
On CUDA (`--device cuda`) `--precision bf16` runs every forward pass under the same bf16 autocast,
and each timing ends with a device synchronize.

All contenders live in this one process. After warm-up steps each, the script runs `--rounds` rounds;
in every round each trains `--steps` steps, the order reversing from round to round, so
slow drift of the machine hits all alike. A timing during which other processes kept more than
`--max-other` of the cores busy (read from /proc/stat) is redone, up to `--retries` times, and
each timing first waits (up to `--max-wait` s) for such a quiet moment. It reports each one's
median img/s over the rounds in which every timing stayed quiet, the ratios of the medians and the spread
of the per-round ratios.

lucidrains' package and diffusers are benchmark-only dependencies (see BENCHMARKS.md for the install
commands). lucidrains' imports torchvision on load, which cannot import beside the CPU torch wheel; where
it cannot, a stand-in from benchmarks/stubs/ is put on sys.path, as its Unet and GaussianDiffusion never
use torchvision (where torchvision works, as on a GPU machine, the stand-in would break diffusers).

    .venv/bin/python benchmarks/bench_train_speed.py --json
    .venv/bin/python benchmarks/bench_train_speed.py --set options --json
    python3 benchmarks/bench_train_speed.py --device cuda --precision bf16 --image-size 96 --batch-size 64 \
        --max-wait 0 --retries 0 --json
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

try:
    import torchvision  # noqa: E402, F401
except Exception:  # noqa: BLE001 - any failure to load it: the stand-in is for exactly that
    sys.path.insert(1, str(HERE / "stubs"))
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from core.config import TrainConfig  # noqa: E402
from core.factory import create_model_and_diffusion  # noqa: E402
from core.model import count_parameters  # noqa: E402
from core.train.trainer import ema_update, make_optimizer  # noqa: E402

DEFAULT_JSON = HERE / "results" / "train_speed.json"
DIM, DIM_MULTS, RES_BLOCKS, TIMESTEPS, LR = 64, (1, 2, 4, 8), 2, 1000, 1e-4


@dataclass
class Contender:
    """What one column trains: its network, the loss of a batch, its optimizer and what else a step
    does after the optimizer (our trainer's EMA update in the `options` set)."""
    model: torch.nn.Module
    loss_fn: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    after_step: Callable[[], None] = lambda: None
    channels_last: bool = False
    counted_loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None  # FLOPs counted eagerly


def ours_config(preset: str, image_size: int) -> TrainConfig:
    """Our TrainConfig: the matched layout, or the defaults a user gets (`ddpm-tui train`)."""
    if preset == "defaults":
        return TrainConfig(image_size=image_size).validate()
    levels = ",".join(str(image_size // 2**i) for i in range(len(DIM_MULTS)))
    return TrainConfig(image_size=image_size, dim=DIM, dim_mults=",".join(map(str, DIM_MULTS)), res_blocks=RES_BLOCKS,
                       attention="linear", attn_resolutions=levels, dropout=0.0, schedule="cosine",
                       timesteps=TIMESTEPS, lr=LR).validate()


def build_ours(preset: str, image_size: int, device: torch.device, kernels: str = "trainer",
               channels_last: bool = False, ema: bool = False, compile_mode: str | None = None) -> Contender:
    """Our U-Net and diffusion as the trainer builds them (core.factory). `kernels`: "trainer" for the
    trainer's AdamW (make_optimizer), or "loop"/"foreach"/"fused" for torch's three AdamW kernels;
    `ema` adds the trainer's EMA update (the loop it had before issue 22 with kernels="loop");
    `compile_mode` trains the U-Net under torch.compile in that mode."""
    torch.manual_seed(0)
    cfg = ours_config(preset, image_size)
    model, diffusion = create_model_and_diffusion(cfg)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if kernels == "trainer":
        optimizer = make_optimizer(model, cfg, device)
    else:
        flags = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[kernels]
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **flags)
    after = lambda: None  # noqa: E731
    if ema:
        shadow = copy.deepcopy(model).requires_grad_(False)
        after = (lambda: ema_loop(shadow, model, 0.999)) if kernels == "loop" else (lambda: ema_update(shadow, model, 0.999))
    net = model if compile_mode is None else torch.compile(model, mode=compile_mode)
    return Contender(model, lambda x0: diffusion.training_loss(lambda x, t: net(x, t), x0), optimizer, after,
                     channels_last, lambda x0: diffusion.training_loss(lambda x, t: model(x, t), x0))


@torch.no_grad()
def ema_loop(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """The trainer's EMA update before issue 22: one lerp_ per parameter (the old path, for comparison)."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)


def build_lucidrains(preset: str, image_size: int, device: torch.device) -> Contender:
    """lucidrains' Unet + GaussianDiffusion with torch's default AdamW (its Trainer uses Adam with
    torch's defaults); it rescales [0, 1] images to [-1, 1] itself."""
    from denoising_diffusion_pytorch import GaussianDiffusion as LGaussianDiffusion, Unet

    torch.manual_seed(0)
    if preset == "defaults":  # Unet(dim=64) as its README: full attention at the last level
        model = Unet(dim=DIM)
        diffusion = LGaussianDiffusion(model, image_size=image_size).to(device)
    else:
        # 2 res blocks per level are fixed in its Unet; full_attn all False = linear attention at
        # every level (its default makes the last level full); its middle is always full attention.
        model = Unet(dim=DIM, dim_mults=DIM_MULTS, full_attn=(False,) * len(DIM_MULTS), dropout=0.0)
        diffusion = LGaussianDiffusion(model, image_size=image_size, timesteps=TIMESTEPS,
                                       objective="pred_noise", beta_schedule="cosine").to(device)
    return Contender(model, lambda x0: diffusion((x0 + 1) / 2), torch.optim.AdamW(model.parameters(), lr=LR))


def diffusers_unet(preset: str, image_size: int):
    """A diffusers UNet2DModel. defaults: the one its train_unconditional example builds. matched:
    our widths (64, 128, 256, 512) with 1 res block per level on the way down and 2 on the way up
    (ours: 2 and 2; its 2 and 3 would make 57 M parameters), full attention (heads of 32) at
    16, 8 and 4 px and in the middle: it has no linear attention, and full attention at 32 px
    (1,024 tokens) would cost more than the rest of the network."""
    from diffusers import UNet2DModel

    down, attn_down, up, attn_up = "DownBlock2D", "AttnDownBlock2D", "UpBlock2D", "AttnUpBlock2D"
    if preset == "defaults":
        return UNet2DModel(sample_size=image_size, layers_per_block=2, block_out_channels=(128, 128, 256, 256, 512, 512),
                           down_block_types=(down, down, down, down, attn_down, down),
                           up_block_types=(up, attn_up, up, up, up, up))
    return UNet2DModel(sample_size=image_size, layers_per_block=1, block_out_channels=(64, 128, 256, 512),
                       down_block_types=(down, attn_down, attn_down, attn_down),
                       up_block_types=(attn_up, attn_up, attn_up, up), attention_head_dim=32)


def build_diffusers(preset: str, image_size: int, device: torch.device) -> Contender:
    """diffusers' UNet2DModel + DDPMScheduler, trained as its train_unconditional example does:
    add_noise, predict the noise, MSE; torch's default AdamW (the example's betas and decay)."""
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    model = diffusers_unet(preset, image_size).to(device)
    scheduler = DDPMScheduler(num_train_timesteps=TIMESTEPS,
                              beta_schedule="linear" if preset == "defaults" else "squaredcos_cap_v2")

    def loss_fn(x0):
        noise = torch.randn_like(x0)
        t = torch.randint(0, TIMESTEPS, (x0.shape[0],), device=x0.device)
        prediction = model(scheduler.add_noise(x0, noise, t), t).sample
        return torch.nn.functional.mse_loss(prediction.float(), noise.float())

    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    return Contender(model, loss_fn, optimizer)


# the three libraries, at the matched config or at their own defaults
LIBRARIES = {"ours": build_ours, "lucidrains": build_lucidrains, "diffusers": build_diffusers}
# our own options against the trainer's path before issue 22 (fp32, NCHW, loop AdamW and EMA)
OPTIONS = {
    "old fp32 loop": dict(kernels="loop", ema=True),
    "foreach": dict(kernels="foreach", ema=True),
    "fused": dict(kernels="fused", ema=True),
    "foreach+cl": dict(kernels="foreach", ema=True, channels_last=True),
    "foreach+bf16": dict(kernels="foreach", ema=True, autocast=True),
    "foreach+bf16+cl": dict(kernels="foreach", ema=True, autocast=True, channels_last=True),
}


def contenders(which: str, image_size: int, device: torch.device, precision: str,
               compile_mode: str | None = None) -> dict:
    """name -> (a build function taking the batch's device, the autocast dtype or None). On CUDA ours
    trains in channels-last, as the trainer does there; `compile_mode` adds ours under torch.compile."""
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    if which in ("matched", "defaults"):
        ours = functools.partial(build_ours, channels_last=device.type == "cuda")
        out = {name: (functools.partial(build, which, image_size), dtype)
               for name, build in dict(LIBRARIES, ours=ours).items()}
        if compile_mode:
            out["ours compiled"] = (functools.partial(ours, which, image_size, compile_mode=compile_mode), dtype)
        if dtype is None:  # and ours as the trainer runs it with --precision bf16 (a CPU's native bf16)
            out["ours bf16"] = (functools.partial(build_ours, which, image_size), torch.bfloat16)
        return out
    out = {}
    for name, options in OPTIONS.items():
        options = dict(options)
        autocast = options.pop("autocast", False)
        out[name] = (functools.partial(build_ours, "matched", image_size, **options),
                     torch.bfloat16 if autocast else None)
    return out


def busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy, steal included (Linux /proc/stat), else None."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait


class Runner:
    """One contender, its optimizer and its timings."""

    def __init__(self, name: str, build, batch: torch.Tensor, dtype: torch.dtype | None):
        self.name, self.rates, self.others, self.discarded = name, [], [], 0
        self.contender = build(batch.device)
        self.batch = batch.contiguous(memory_format=torch.channels_last) if self.contender.channels_last else batch
        self.model = self.contender.model.train()
        loss_fn = self.contender.loss_fn
        self.loss_fn = loss_fn if dtype is None else self.autocast(loss_fn, batch.device.type, dtype)
        self.params = count_parameters(self.model)
        counted = self.contender.counted_loss_fn or loss_fn
        counted = counted if dtype is None else self.autocast(counted, batch.device.type, dtype)
        with FlopCounterMode(display=False) as counter:  # matmuls and convolutions of one step
            counted(self.batch).backward()
        self.model.zero_grad(set_to_none=True)
        self.gflop = counter.get_total_flops() / 1e9
        self.opt = self.contender.optimizer

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
        def work():
            for _ in range(n):
                self.opt.zero_grad(set_to_none=True)
                self.loss_fn(self.batch).backward()
                self.opt.step()
                self.contender.after_step()
            self.synchronize()

        self.synchronize()
        wall, other = timed_beside_others(work)
        return n * self.batch.shape[0] / wall, other

    def timed(self, n: int, max_other: float, retries: int, max_wait: float) -> None:
        """Time n steps once the machine is quiet; redo (up to `retries` times) if others got busy."""
        rate, other, discarded = quiet_timing(lambda: self.steps(n), max_other, retries, max_wait)
        self.rates.append(rate)
        self.others.append(other)
        self.discarded += discarded


def timed_beside_others(work: Callable[[], None]) -> tuple[float, float | None]:
    """Run `work`: (its wall seconds, the share of all cores other processes used meanwhile, or None
    where /proc/stat cannot be read)."""
    busy0, own0, start = busy_cpu_s(), time.process_time(), time.perf_counter()
    work()
    wall, busy1 = time.perf_counter() - start, busy_cpu_s()
    other = None if busy0 is None else max(0.0, busy1 - busy0 - (time.process_time() - own0))
    return wall, None if other is None else other / (wall * os.cpu_count())


def quiet_timing(measure: Callable[[], tuple[float, float | None]], max_other: float, retries: int,
                 max_wait: float) -> tuple[float, float | None, int]:
    """`measure()` -> (rate, others' share) once the machine is quiet, redone up to `retries` times
    while other processes kept more than `max_other` of the cores: (rate, share, timings discarded)."""
    for attempt in range(retries + 1):
        wait_quiet(max_other, max_wait)
        rate, other = measure()
        if other is None or other <= max_other or attempt == retries:
            return rate, other, attempt
    raise AssertionError("unreachable")


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


def clean_rounds(runners: list, max_other: float) -> list[int]:
    """The rounds whose every timing kept other processes under `max_other` of the cores (a ratio
    from a round where one contender ran beside a busy neighbour says nothing)."""
    return [i for i in range(len(runners[0].rates))
            if all(r.others[i] is None or r.others[i] <= max_other for r in runners)]


def round_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """The ratio of img/s in each round (the spread says how much one comparison can be trusted)."""
    return [a / b for a, b in zip(numerator, denominator)]


def library_versions() -> dict:
    """Versions of the benchmark-only packages that are installed."""
    found = {}
    for name in ("denoising-diffusion-pytorch", "diffusers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", dest="which", choices=("matched", "defaults", "options"), default="matched",
                   help="matched: the three libraries at one layout; defaults: each at its own defaults; "
                        "options: our trainer's speed options against its old fp32 path (default matched)")
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
    p.add_argument("--compile", dest="compile_mode", default=None, metavar="MODE",
                   help="also train ours under torch.compile in this mode (default, reduce-overhead, ...)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    x0 = (torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1).to(device)
    runners = [Runner(name, build, x0, dtype)
               for name, (build, dtype) in contenders(args.which, args.image_size, device, args.precision,
                                                           args.compile_mode).items()]
    baseline = runners[0].name
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"torch {torch.__version__}{gpu}, set {args.which}, {args.precision}, {args.image_size} px, "
          f"{args.threads} threads, batch {args.batch_size}, " + ", ".join(f"{k} {v}" for k, v in library_versions().items()))
    for r in runners:
        print(f"{r.name:>16}: {r.params:,} parameters, {r.gflop:.1f} GFLOP per step (forward + backward)")

    for r in runners:
        r.steps(args.warmup)
    for i in range(args.rounds):
        for r in runners if i % 2 == 0 else runners[::-1]:
            r.timed(args.steps, args.max_other, args.retries, args.max_wait)
            print(f"  {r.name}: {r.rates[-1]:.2f} img/s", file=sys.stderr, flush=True)
        print(f"round {i + 1:>2}/{args.rounds}: " + ", ".join(
            f"{r.name} {r.rates[-1]:5.2f} img/s" + ("" if r.others[-1] is None else f" (others {r.others[-1]:.0%})")
            for r in runners))

    kept = clean_rounds(runners, args.max_other)
    print(f"rounds in which every timing stayed under --max-other: {len(kept)} of {args.rounds}"
          + ("" if kept else "; none, so the figures below use all rounds and are disturbed by other load"))
    kept = kept or list(range(args.rounds))
    med = {r.name: statistics.median(r.rates[i] for i in kept) for r in runners}
    # libraries: ours / theirs; options: each option / the old path
    speedup = args.which == "options"
    spread = {r.name: [x for i, x in enumerate(round_ratios(*((r.rates, runners[0].rates) if speedup
                                                            else (runners[0].rates, r.rates)))) if i in kept]
              for r in runners[1:]}
    ratio_of = {name: (med[name] / med[baseline]) if speedup else (med[baseline] / med[name]) for name in spread}
    label = f"model / {baseline}" if speedup else f"{baseline} / model"
    print("\n| model | parameters | GFLOP/step | median img/s | min-max img/s | "
          f"{label}: of medians (min-max of rounds) |\n|---|---:|---:|---:|---:|---:|")
    for r in runners:
        versus = "" if r is runners[0] else (f"{ratio_of[r.name]:.2f}x "
                                              f"({min(spread[r.name]):.2f}-{max(spread[r.name]):.2f})")
        rates = [r.rates[i] for i in kept]
        print(f"| {r.name} | {r.params / 1e6:.2f} M | {r.gflop:.0f} | {med[r.name]:.2f} "
              f"| {min(rates):.2f}-{max(rates):.2f} | {versus} |")
    print("timings redone because other processes were busy: "
          + ", ".join(f"{r.name} {r.discarded}" for r in runners))
    if args.which == "matched" and device.type == "cpu":
        for name in [n for n in ("ours", "ours bf16") if n in med]:
            ratio = med[name] / med["lucidrains"]
            print(f"ratio {name} / lucidrains (median img/s): {ratio:.2f}x (goal on CPU >= 2x: "
                  f"{'met' if ratio >= 2 else 'NOT met'})")

    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "threads": args.threads,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
        "versions": {"torch": torch.__version__, **library_versions()},
        "config": {"set": args.which, "image_size": args.image_size, "precision": args.precision, "compile": args.compile_mode, "dim": DIM, "dim_mults": list(DIM_MULTS), "res_blocks": RES_BLOCKS,
                   "batch_size": args.batch_size, "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup,
                   "max_other": args.max_other, "retries": args.retries, "max_wait": args.max_wait},
        "params": {r.name: r.params for r in runners},
        "gflop_per_step": {r.name: round(r.gflop, 2) for r in runners},
        "img_per_s": {r.name: [round(x, 3) for x in r.rates] for r in runners},
        "clean_rounds": kept,
        "median_img_per_s": {k: round(v, 3) for k, v in med.items()},
        "ratio": label,
        "ratio_of_medians": {name: round(v, 3) for name, v in ratio_of.items()},
        "round_ratios": {name: [round(x, 3) for x in v] for name, v in spread.items()},
        "other_cpu_share": {r.name: [None if x is None else round(x, 3) for x in r.others] for r in runners},
        "discarded_timings": {r.name: r.discarded for r in runners},
    }
    if args.json:
        save_json(args.json, record)
        print(f"appended to {args.json}")
    return record


if __name__ == "__main__":
    main()

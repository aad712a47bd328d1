"""What data parallelism costs or gains, through the real `ddpm-tui train` (torchrun for the ranks),
at the same global batch:

- on the CPU: 2 gloo ranks of 1 thread each against 1 process of 2 threads;
- with --device cuda: N GPUs (NCCL, one rank each) against 1 GPU, and with --deterministic also
  the cost of deterministic kernels on one GPU.

Each setting trains the same model on the demo data; the time per step is read from the wall
times of the stored `train/loss` points after a warm-up, so start-up, checkpoints and the final
sample are left out. The settings alternate for ROUNDS rounds; ratios are of the medians.

    .venv/bin/python benchmarks/bench_ddp.py [--steps 60] [--warmup 10] [--global-batch 32] [--rounds 2]
    python benchmarks/bench_ddp.py --device cuda --gpus 2 --image-size 96 --global-batch 128 --deterministic
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from core.store import Store, queries

def model_options(device: str, image_size: int) -> list[str]:
    """The CPU-sized demo model on the CPU; on GPUs the product's 96 px model in bf16, eager in every
    setting (a --deterministic run is not compiled by default, so compiling the others would mix
    torch.compile's gain into deterministic kernels' cost)."""
    common = ["--data", "demo", "--dropout", "0", "--sample-every", "0", "--eval-every", "0", "--device", device,
              "--image-size", str(image_size)]
    if device == "cpu":
        return [*common, "--dim", "32", "--dim-mults", "1,2,2", "--res-blocks", "1", "--attention", "none"]
    return [*common, "--dim", "64", "--dim-mults", "1,2,4,8", "--attention", "linear", "--precision", "bf16",
            "--compile", "off"]


def seconds_per_step(workdir: Path, model: list[str], extra: list[str], threads: int, steps: int, warmup: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), DDPM_TUI_DB=f"sqlite:///{workdir / 'runs.db'}",
               DDPM_TUI_RUNS=str(workdir / "runs"))
    subprocess.run([sys.executable, "-m", "ddpm_tui", "train", *model, "--max-steps", str(steps),
                    "--ckpt-every", str(steps), *extra], env=env, check=True, capture_output=True)
    store = Store(env["DDPM_TUI_DB"])
    run_id = max(r.id for r in queries.list_runs(store))
    steps_seen, _, wall = queries.metric_series(store, run_id, "train/loss", max_points=10**6)
    assert steps_seen[-1] == steps
    return (wall[-1] - wall[warmup - 1]) / (steps - warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--global-batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--gpus", type=int, default=2, help="with --device cuda: GPUs of the data-parallel setting")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--deterministic", action="store_true", help="with --device cuda: also one GPU under --deterministic")
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="ddpm-ddp-cache-"))
    os.environ["DDPM_TUI_CACHE"] = str(cache)
    batch = str(args.global_batch)
    if args.device == "cpu":
        settings = {
            "1 process x 2 threads": (["--batch-size", batch], 2),
            "2 gloo ranks x 1 thread": (["--batch-size", str(args.global_batch // 2), "--nproc", "2"], 1),
        }
    else:
        settings = {"1 GPU": (["--batch-size", batch], 1)}
        if args.gpus > 1:
            settings[f"{args.gpus} GPUs (NCCL)"] = (["--batch-size", str(args.global_batch // args.gpus),
                                                    "--nproc", str(args.gpus)], 1)
        if args.deterministic:
            settings["1 GPU, --deterministic"] = (["--batch-size", batch, "--deterministic"], 1)
    model = model_options(args.device, args.image_size)
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, (extra, threads) in settings.items():
            with tempfile.TemporaryDirectory(prefix="ddpm-ddp-") as folder:
                times[name].append(seconds_per_step(Path(folder), model, extra, threads, args.steps, args.warmup))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: {medians[name] * 1000:.1f} ms/step median of {', '.join(f'{x * 1000:.1f}' for x in t)} "
              f"({args.global_batch / medians[name]:.1f} img/s)")
    base = next(iter(medians))
    ratios = {name: medians[name] / medians[base] for name in medians}
    for name in list(medians)[1:]:
        print(f"{name} / {base}: {ratios[name]:.2f}x the time per step (global batch {args.global_batch})")
    print(json.dumps({"ms_per_step": {k: v * 1000 for k, v in medians.items()}, "time_ratio_to_first": ratios}))


if __name__ == "__main__":
    main()

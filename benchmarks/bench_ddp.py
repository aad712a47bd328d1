"""What data parallelism costs on the CPU: 2 gloo ranks of 1 thread each against 1 process of 2
threads, at the same global batch, through the real `ddpm-tui train` (torchrun for the ranks).

Both train the same model on the demo data; the time per step is read from the wall times of the
stored `train/loss` points after a warm-up, so start-up, checkpoints and the final sample are left
out. The two settings alternate for ROUNDS rounds; the ratio is of the medians.

    .venv/bin/python benchmarks/bench_ddp.py [--steps 60] [--warmup 10] [--global-batch 32] [--rounds 2]
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

MODEL = ["--data", "demo", "--image-size", "32", "--dim", "32", "--dim-mults", "1,2,2", "--res-blocks", "1",
         "--attention", "none", "--dropout", "0", "--device", "cpu", "--sample-every", "0", "--eval-every", "0"]


def seconds_per_step(workdir: Path, extra: list[str], threads: int, steps: int, warmup: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), DDPM_TUI_DB=f"sqlite:///{workdir / 'runs.db'}",
               DDPM_TUI_RUNS=str(workdir / "runs"))
    subprocess.run([sys.executable, "-m", "ddpm_tui", "train", *MODEL, "--max-steps", str(steps),
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
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="ddpm-ddp-cache-"))
    os.environ["DDPM_TUI_CACHE"] = str(cache)
    settings = {
        "1 process x 2 threads": (["--batch-size", str(args.global_batch)], 2),
        "2 gloo ranks x 1 thread": (["--batch-size", str(args.global_batch // 2), "--nproc", "2"], 1),
    }
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, (extra, threads) in settings.items():
            with tempfile.TemporaryDirectory(prefix="ddpm-ddp-") as folder:
                times[name].append(seconds_per_step(Path(folder), extra, threads, args.steps, args.warmup))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: {medians[name] * 1000:.1f} ms/step median of {', '.join(f'{x * 1000:.1f}' for x in t)} "
              f"({args.global_batch / medians[name]:.1f} img/s)")
    one, two = medians.values()
    print(f"2 ranks / 1 process: {two / one:.2f}x the time per step (global batch {args.global_batch})")
    print(json.dumps({"ms_per_step": {k: v * 1000 for k, v in medians.items()}, "ratio": two / one}))


if __name__ == "__main__":
    main()

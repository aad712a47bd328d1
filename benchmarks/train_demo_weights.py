"""Make the demo's starting weights (core/assets/demo_weights.pt): the demo preset's network trained
on the demo data by the real `ddpm-tui train` for a fixed wall-clock budget, then its EMA weights
kept (float32, about 2.8 MB) with how they were made.

    .venv/bin/python benchmarks/train_demo_weights.py --minutes 60 [--work /tmp/demo-weights]
    .venv/bin/python benchmarks/train_demo_weights.py --minutes 90 --resume   # train the same run further

Seed 0; the preset's architecture (core.config.DEMO_PRESET) with a steadier batch and learning rate
than the live demo's, since the run is long. The run is stopped through `ddpm-tui runs stop` (the
trainer checkpoints as it stops) and the newest checkpoint's EMA is exported."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import DEMO_PRESET  # noqa: E402

LONG_RUN = {"batch_size": 16, "lr": 4e-4, "warmup_steps": 200, "seed": 0}
ARCHITECTURE = ("image_size", "schedule", "objective", "attention", "dim", "dim_mults", "res_blocks", "dropout")


def train_args() -> list[str]:
    args = ["train", "--data", "demo", "--name", "demo-weights", "--max-steps", "1000000", "--ckpt-every", "500",
            "--sample-every", "2000", "--eval-every", "1000", "--device", "cpu"]
    for key in ARCHITECTURE:
        args += [f"--{key.replace('_', '-')}", str(DEMO_PRESET[key])]
    for key, value in LONG_RUN.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/demo-weights"))
    parser.add_argument("--out", type=Path, default=ROOT / "core" / "assets" / "demo_weights.pt")
    parser.add_argument("--resume", action="store_true",
                        help="continue the work folder's run from its last checkpoint (its optimiser state too); "
                             "the recorded time adds this session's to the one --out holds")
    opts = parser.parse_args()
    opts.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DDPM_TUI_CACHE=str(opts.work / "cache"))
    command = [sys.executable, "-m", "ddpm_tui", *(["train", "--resume", "1"] if opts.resume else train_args())]
    earlier = torch.load(opts.out, map_location="cpu", weights_only=True) if opts.resume else {"training": {}}
    started = time.time()
    trainer = subprocess.Popen(command, cwd=opts.work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.time() - started < opts.minutes * 60 and trainer.poll() is None:
            time.sleep(5)
        subprocess.run([sys.executable, "-m", "ddpm_tui", "runs", "stop", "1"], cwd=opts.work, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        trainer.wait(timeout=300)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    seconds = time.time() - started + earlier["training"].get("seconds", 0)
    paths = sorted((opts.work / "runs").glob("*/checkpoints/ckpt-*.pt"))
    state = torch.load(paths[-1], map_location="cpu", weights_only=True)
    torch.save({"ema": state["ema"], "step": state["step"],
                "config": {key: DEMO_PRESET[key] for key in ARCHITECTURE},
                "made_by": " then ".join(filter(None, [earlier.get("made_by"),
                                                       "benchmarks/train_demo_weights.py " + " ".join(sys.argv[1:])])),
                "training": {**LONG_RUN, "seconds": round(seconds), "steps": state["step"]}}, opts.out)
    print(f"{opts.out}: EMA of step {state['step']} after {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()

"""Does bf16 autocast on a CPU train as well as fp32? The demo preset from scratch, same seed, once in
each precision, in one process: time, steps/s, the loss curve (smoothed as the trainer smooths it)
and the colour distance (core.evaluate.colour.colour_w1, grey levels per channel) of EMA samples
(DDIM 50, fixed seed) to the demo data's patches.

The check (issue 22): bf16's final smoothed loss at most 5% above fp32's and its mean colour W1 at
most 2 grey levels above fp32's (lower is fine: one seed's difference either way is mostly chance). bf16 runs only where the CPU computes it natively (core.device); elsewhere
the trainer falls back to fp32 and the script says so.

    .venv/bin/python benchmarks/bench_cpu_bf16_quality.py --json [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.config import DEMO_PRESET, TrainConfig  # noqa: E402
from core.data import open_split, resolve_data, to_model_input  # noqa: E402
from core.data.transforms import to_uint8  # noqa: E402
from core.device import cpu_has_native_bf16  # noqa: E402
from core.evaluate.colour import colour_w1  # noqa: E402
from core.generation import generate  # noqa: E402
from core.train.trainer import Trainer  # noqa: E402

DEFAULT_JSON = HERE / "results" / "cpu_bf16_quality.json"
LOSS_TOLERANCE, COLOUR_TOLERANCE = 0.05, 2.0


def reference_patches(root: Path, cfg: TrainConfig, n: int = 256) -> np.ndarray:
    """n seeded random training patches as the run sees them, uint8."""
    source = open_split(root, "train")
    idx = np.sort(np.random.default_rng(0).choice(len(source), n, replace=False))
    patches = np.stack([source.read(int(i), int(i) + 1)[0] for i in idx])
    source.close()
    return to_uint8(to_model_input(patches, cfg.image_size, cfg.preprocess, "cpu"))


def train_once(precision: str, steps: int, workdir: Path, root: Path, seed: int = 0) -> dict:
    """Train the demo preset from scratch in `precision`; its timing, losses and sample colours."""
    cfg = TrainConfig(**dict(DEMO_PRESET, max_steps=steps, sample_every=0, eval_every=0, ckpt_every=10**6,
                             device="cpu", precision=precision, seed=seed)).validate()
    smoothed = []
    trainer = Trainer(cfg, workdir / precision, root)
    trainer.on_step = lambda stats: smoothed.append(trainer.smooth_loss.value)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        images = generate(trainer.ema, trainer.diffusion, 64, cfg.image_size, "ddim", 50, seed=1234).images
    trainer.close()
    w1 = colour_w1(images, reference_patches(root, cfg))
    return {"precision": trainer.precision, "seconds": round(seconds, 1), "steps_per_s": round(steps / seconds, 3),
            "final_smoothed_loss": round(smoothed[-1], 5), "smoothed_loss_every_25": [round(v, 5) for v in smoothed[24::25]],
            "colour_w1_rgb": [round(float(v), 2) for v in w1], "colour_w1_mean": round(float(w1.mean()), 2)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=DEMO_PRESET["max_steps"], help="training steps (the demo's)")
    p.add_argument("--seed", type=int, default=0, help="the training seed (network, batches, noise)")
    p.add_argument("--json", nargs="?", const=DEFAULT_JSON, type=Path, default=None, metavar="PATH",
                   help="append the result to a JSON list")
    args = p.parse_args(argv)
    root = resolve_data("demo")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {precision: train_once(precision, args.steps, Path(tmp), root, args.seed) for precision in ("fp32", "bf16")}
    for name, run in runs.items():
        print(f"{name}: trained in {run['precision']}, {run['steps_per_s']:.2f} steps/s, final smoothed loss "
              f"{run['final_smoothed_loss']:.4f}, colour W1 {run['colour_w1_rgb']} (mean {run['colour_w1_mean']})")
    fp32, bf16 = runs["fp32"], runs["bf16"]
    loss_ok = bf16["final_smoothed_loss"] <= fp32["final_smoothed_loss"] * (1 + LOSS_TOLERANCE)
    colour_ok = bf16["colour_w1_mean"] <= fp32["colour_w1_mean"] + COLOUR_TOLERANCE
    print(f"speed bf16 / fp32: {bf16['steps_per_s'] / fp32['steps_per_s']:.2f}x; loss at most "
          f"{LOSS_TOLERANCE:.0%} above: {loss_ok}; colour W1 at most {COLOUR_TOLERANCE} grey levels above: {colour_ok}")
    print("(steps/s of runs one after another on a shared machine; bench_train_speed.py --set options times them side by side)")
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
              "native_bf16": cpu_has_native_bf16(), "steps": args.steps, "seed": args.seed, "runs": runs,
              "speedup": round(bf16["steps_per_s"] / fp32["steps_per_s"], 3), "loss_ok": loss_ok, "colour_ok": colour_ok}
    if args.json:
        records = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(records + [record], indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()

"""How good the demo's shipped weights are (core/assets/demo_weights.pt): colour distance and KID of
their samples against the demo data, beside real against real and beside a fresh network trained
for the demo's old 300 steps.

    .venv/bin/python benchmarks/bench_demo_weights.py [--weights PATH] [--grid docs/demo-weights-samples.png]

Colour distance: the per-channel Wasserstein-1 distance of pixel values (core.evaluate.colour), 16
samples against 256 demo training patches, mean over R, G, B and over 5 draws (real against real:
16 training patches against 256 others). KID: 128 DDIM-50 samples against 128 demo test patches in
the features of a PCam classifier trained on the demo data (600 steps), with its 95% interval.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core.config import DEMO_PRESET, TrainConfig  # noqa: E402
from core.data import open_split, resolve_data, to_model_input  # noqa: E402
from core.data.transforms import to_uint8  # noqa: E402
from core.evaluate import distances  # noqa: E402
from core.evaluate.classifier import held_out_patches, predict, train_classifier  # noqa: E402
from core.evaluate.colour import colour_w1  # noqa: E402
from core.factory import create_model_and_diffusion  # noqa: E402
from core.generation import generate  # noqa: E402
from core.images import make_grid, save_png  # noqa: E402
from core.inference import for_inference  # noqa: E402
from core.train.checkpoint import DEMO_WEIGHTS  # noqa: E402


def training_pool(root: Path, cfg: TrainConfig) -> np.ndarray:
    source = open_split(root, "train")
    patches = source.read(0, len(source))
    source.close()
    return to_uint8(to_model_input(patches, cfg.image_size, cfg.preprocess, "cpu"))


def colour_distance(images: np.ndarray, pool: np.ndarray, draws: int = 5) -> float:
    """Mean over draws and channels of W1(16 of `images`, 256 of `pool`)."""
    values = []
    for d in range(draws):
        rng = np.random.default_rng(100 + d)
        values.append(float(colour_w1(images[rng.permutation(len(images))[:16]],
                                      pool[rng.permutation(len(pool))[:256]]).mean()))
    return float(np.mean(values))


def real_against_real(pool: np.ndarray, draws: int = 5) -> float:
    values = []
    for d in range(draws):
        perm = np.random.default_rng(100 + d).permutation(len(pool))
        values.append(float(colour_w1(pool[perm[:16]], pool[perm[16:272]]).mean()))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=DEMO_WEIGHTS,
                        help="shipped weights, or a demo run's checkpoint (its EMA weights are used)")
    parser.add_argument("--grid", type=Path, default=None, help="also write a 4x4 grid of DDIM-50 samples here")
    opts = parser.parse_args()
    started = time.time()
    cfg = TrainConfig(**DEMO_PRESET)
    root = resolve_data("demo")
    net, diffusion = create_model_and_diffusion(cfg)
    stored = torch.load(opts.weights, map_location="cpu", weights_only=True)
    net.load_state_dict(stored["ema"])
    net = for_inference(net, torch.device("cpu"))
    pool = training_pool(root, cfg)
    print(f"weights: {opts.weights} (EMA of step {stored['step']}, {stored.get('training', 'a run checkpoint')})")
    print(f"colour distance, real against real: {real_against_real(pool):.1f} grey levels")
    classifier, report = train_classifier(root, cfg.image_size, cfg.preprocess, 600)
    test, _ = held_out_patches(root, "test", cfg.image_size, cfg.preprocess, limit=128)
    test_features = predict(classifier, test)[0]
    print(f"classifier: accuracy {report.accuracy:.3f}, ROC AUC {report.auc:.3f}; {len(test)} test patches")
    half = len(pool) // 2
    kid, _ = distances.kid(predict(classifier, pool[:half][:len(test)])[0], test_features)
    print(f"KID, real training against real test patches: {kid.value:.3f} [{kid.low:.3f}, {kid.high:.3f}]")
    for sampler, steps in (("ddim", 50), ("dpm++", 20)):
        with torch.inference_mode():
            images = generate(net, diffusion, len(test), cfg.image_size, sampler, steps, seed=99).images
        kid, _ = distances.kid(predict(classifier, images)[0], test_features)
        print(f"{sampler}-{steps}: colour distance {colour_distance(images, pool):.1f} grey levels, "
              f"KID {kid.value:.3f} [{kid.low:.3f}, {kid.high:.3f}]")
        if opts.grid and sampler == "ddim":
            save_png(opts.grid, make_grid(images[:16], ncols=4, scale=3))
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()

"""Evaluation costs on the demo: classifier feature extraction, KID/FID at n = 1,000, and DDIM-50
against DDPM-1000 sampling (time and KID of the samples against the held-out split).

    .venv/bin/python benchmarks/bench_eval.py

Trains the demo preset (600 steps) and a classifier (600 steps) in a temporary store first; about
12 minutes on 2 CPU cores.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import DEMO_PRESET, TrainConfig  # noqa: E402
from core.data import resolve_data  # noqa: E402
from core.evaluate import distances  # noqa: E402
from core.evaluate.classifier import held_out_patches, load_classifier, predict  # noqa: E402
from core.evaluate.classifier_service import plan_classifier, train_and_store_classifier  # noqa: E402
from core.inference import load_run_model  # noqa: E402
from core.generation import generate  # noqa: E402
from core.store import Store  # noqa: E402
from core.runner.run import execute_run, new_run  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, runs = Store(f"sqlite:///{tmp}/runs.db"), Path(tmp) / "runs"
        cfg = TrainConfig(**dict(DEMO_PRESET, max_steps=600, sample_every=0, eval_every=0, ckpt_every=600)).validate()
        run = new_run(store, runs, cfg)
        _, train_s = timed(lambda: execute_run(store, run.id))
        classifier, clf_s = timed(lambda: train_and_store_classifier(store, runs, plan_classifier("demo", steps=600)))
        print(f"demo run: 600 steps in {train_s:.0f} s; classifier: 600 steps in {clf_s:.0f} s, accuracy "
              f"{classifier.accuracy:.3f}, ROC AUC {classifier.auc:.3f} on {classifier.n_eval} {classifier.split} patches")
        model = load_classifier(Path(classifier.path))
        real, _ = held_out_patches(resolve_data("demo"), "test", 32, "center-crop")
        many = np.concatenate([real] * 8)[:1000]
        rates = []
        for _ in range(3):
            _, seconds = timed(lambda: predict(model, many))
            rates.append(len(many) / seconds)
        print(f"classifier features: {statistics.median(rates):,.0f} images/s (32 px, batch 256, median of 3)")
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(1000, 128)), rng.normal(size=(1000, 128)) + 0.1
        _, kid_s = timed(lambda: distances.kid(a, b))
        _, fid_s = timed(lambda: distances.fid(a, b))
        print(f"n = 1,000, 128 features: KID {kid_s:.2f} s (20 subsets of 50), FID {fid_s:.2f} s (with 100 bootstrap "
              "resamples; one Frechet distance is 1/101 of it)")

        net, diffusion, _, _, _ = load_run_model(store, run.id, "cpu")
        real_feats = predict(model, real)[0]
        for sampler, steps in (("ddim", 50), ("ddpm", 1000)):
            images, seconds = timed(lambda: generate(net, diffusion, 64, 32, sampler, steps, seed=0).images)
            interval, _ = distances.kid(predict(model, images)[0], real_feats[:64], subset_size=16)
            print(f"{sampler}-{steps}: 64 samples in {seconds:.1f} s; KID vs 64 test patches {interval.value:.4f} "
                  f"[{interval.low:.4f}, {interval.high:.4f}]")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()

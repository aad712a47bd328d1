"""Which objective and schedule give tissue-coloured samples soonest? The demo's comparison.

For each dataset x objective x schedule x seed, trains the demo preset (core.config.DEMO_PRESET, on
the CPU) and, at a few step counts, draws 16 DDIM-50 samples from the EMA weights and measures the
per-channel colour Wasserstein-1 distance (grey levels) to 256 training patches, beside the same
distance for 16 real patches (real vs. real). Datasets: the demo set, and the 15 real PCam patches
that ship with the project.

    .venv/bin/python benchmarks/bench_objectives.py --json [--eval]

Takes about 25 minutes on 2 CPU cores (35 with --eval: KID in a PCam classifier's features and
the estimated bits/dim at the last step); --json appends the record to
benchmarks/results/objectives.json.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import DEMO_PRESET, TrainConfig  # noqa: E402
from core.data import open_split, resolve_data, to_model_input  # noqa: E402
from core.data.demo import real_patches  # noqa: E402
from core.data.sources import pcam_paths  # noqa: E402
from core.data.transforms import to_uint8  # noqa: E402
from core.evaluate import distances  # noqa: E402
from core.evaluate.classifier import held_out_patches, predict, train_classifier  # noqa: E402
from core.evaluate.colour import colour_w1  # noqa: E402
from core.evaluate.nll import variational_bound  # noqa: E402
from core.inference import for_inference  # noqa: E402
from core.intervals import mean_ci  # noqa: E402
from core.generation import generate  # noqa: E402
from core.train.trainer import Trainer  # noqa: E402


def real_dataset(folder: Path) -> Path:
    """The 15 shipped real PCam patches as a PCam-layout train split."""
    x, y = real_patches()
    for path, key, data in ((pcam_paths(folder, "train")[0], "x", x),
                            (pcam_paths(folder, "train")[1], "y", y.reshape(-1, 1, 1, 1))):
        with h5py.File(path, "w") as f:
            f.create_dataset(key, data=data)
    return folder


def training_patches(root: Path, cfg: TrainConfig, n: int, seed: int) -> np.ndarray:
    """Up to n training patches as the run sees them (centre crop to its size), uint8."""
    source = open_split(root, "train")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(source), size=min(n, len(source)), replace=False))
    patches = np.stack([source.read(int(i), int(i) + 1)[0] for i in idx])
    source.close()
    return to_uint8(to_model_input(patches, cfg.image_size, cfg.preprocess, "cpu"))


def real_vs_real(root: Path, cfg: TrainConfig, seeds: int = 5) -> list[float]:
    """Mean over channels of W1(16 real patches, the 256 reference ones), for disjoint draws where
    the set is large enough (the 15-patch set: 8 against the other 7)."""
    pool = training_patches(root, cfg, 10**9, 0)
    out = []
    for s in range(seeds):
        perm = np.random.default_rng(100 + s).permutation(len(pool))
        if len(pool) >= 272:
            a, b = pool[perm[:16]], pool[perm[16:272]]
        else:
            a, b = pool[perm[: len(pool) // 2]], pool[perm[len(pool) // 2:]]
        out.append(float(colour_w1(a, b).mean()))
    return out


def final_scores(trainer: Trainer, classifier, real_test: np.ndarray) -> dict:
    """At the last step: KID of 128 DDIM-50 samples against the 128 test patches in the PCam
    classifier's features, and the bits/dim bound estimated from 50 timesteps per test patch."""
    net = for_inference(copy.deepcopy(trainer.ema), torch.device("cpu"))
    with torch.inference_mode():
        samples = generate(net, trainer.diffusion, len(real_test), real_test.shape[1], "ddim", 50, seed=99).images
    kid, _ = distances.kid(predict(classifier, samples)[0], predict(classifier, real_test)[0])
    x0 = torch.from_numpy(real_test).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    bound = mean_ci(variational_bound(lambda x, t, y: net(x, t), trainer.diffusion, x0, timesteps=50, seed=0,
                                      max_batch=64).total)
    return {"kid": [round(v, 4) for v in (kid.value, kid.low, kid.high)],
            "nll_bpd_estimate": [round(v, 4) for v in (bound.value, bound.low, bound.high)]}


def run_one(root: Path, data_name: str, objective: str, schedule: str, seed: int, checkpoints: list[int],
            reference: np.ndarray, work: Path, scorer=None, **overrides) -> dict:
    cfg = TrainConfig(**dict(DEMO_PRESET, data=str(root), objective=objective, schedule=schedule, seed=seed,
                             max_steps=max(checkpoints), sample_every=0, eval_every=0, ckpt_every=10**6,
                             device="cpu", **overrides)).validate()
    trainer = Trainer(cfg, work / f"{data_name}-{objective}-{schedule}-{seed}", root)
    points, started = [], time.perf_counter()
    for steps in checkpoints:
        trainer.total = steps
        trainer.fit()
        elapsed = time.perf_counter() - started
        with torch.inference_mode():
            images = generate(trainer.ema, trainer.diffusion, 16, cfg.image_size, "ddim", 50, seed=1234).images
        w1 = colour_w1(images, reference)
        points.append({"step": steps, "train_seconds": round(elapsed, 1), "w1_rgb": [round(float(v), 2) for v in w1],
                       "w1_mean": round(float(w1.mean()), 2)})
        print(f"  {data_name:<5} {objective:<4} {schedule:<7} seed {seed} {overrides or ''} step {steps:>4} "
              f"({elapsed:5.0f} s): W1 R/G/B {' / '.join(f'{v:.1f}' for v in w1)}", flush=True)
    if scorer is not None:
        points[-1].update(scorer(trainer))
        print(f"  {'':<5} at step {checkpoints[-1]}: KID {points[-1]['kid']}, bits/dim (estimate) "
              f"{points[-1]['nll_bpd_estimate']}", flush=True)
    trainer.close()
    return {"data": data_name, "objective": objective, "schedule": schedule, "seed": seed,
            "overrides": overrides, "points": points}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="150,300,600", help="step counts at which samples are measured")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--objectives", default="eps,v,x0")
    parser.add_argument("--schedules", default="cosine,linear")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--eval", action="store_true",
                        help="also KID (in a PCam classifier's features) and bits/dim at the last step, on the demo data")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    checkpoints = [int(s) for s in args.steps.split(",")]
    results, refs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        datasets = {"demo": resolve_data("demo"), "real": real_dataset(Path(tempfile.mkdtemp(dir=tmp)))}
        base = TrainConfig(**DEMO_PRESET)
        scorer = None
        if args.eval:
            classifier, report = train_classifier(datasets["demo"], base.image_size, base.preprocess, 600)
            print(f"classifier: accuracy {report.accuracy:.3f}, ROC AUC {report.auc:.3f}", flush=True)
            real_test, _ = held_out_patches(datasets["demo"], "test", base.image_size, base.preprocess)
            scorer = functools.partial(final_scores, classifier=classifier, real_test=real_test)
        for name, root in datasets.items():
            reference = training_patches(root, base, 256, 0)
            refs[name] = real_vs_real(root, base)
            print(f"{name}: real vs real W1 (mean over channels): "
                  f"{', '.join(f'{v:.1f}' for v in refs[name])}", flush=True)
            seeds = range(args.seeds) if name == "demo" else range(1)
            schedules = args.schedules.split(",") if name == "demo" else ["cosine"]
            for objective, schedule, seed in itertools.product(args.objectives.split(","), schedules, seeds):
                results.append(run_one(root, name, objective, schedule, seed, checkpoints, reference, work,
                                       scorer if name == "demo" else None))
            if name == "demo":  # the preset's learning rate and EMA against the alternatives
                for overrides in ({"lr": 2e-4}, {"ema_decay": 0.999}):
                    results.append(run_one(root, name, "v", "cosine", 0, checkpoints, reference, work, **overrides))
    print("\nmean W1 over channels at the last step (median over seeds):")
    for key, group in itertools.groupby(sorted(results, key=lambda r: (r["data"], r["objective"], r["schedule"],
                                                                       str(r["overrides"]))),
                                        key=lambda r: (r["data"], r["objective"], r["schedule"], str(r["overrides"]))):
        group = list(group)
        print(f"  {key[0]:<5} {key[1]:<4} {key[2]:<7} {key[3]:<22} "
              f"{statistics.median(r['points'][-1]['w1_mean'] for r in group):6.1f}")
    if args.json:
        record = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
                  "torch": torch.__version__, "threads": torch.get_num_threads(), "preset": DEMO_PRESET,
                  "real_vs_real": refs, "runs": results}
        out = ROOT / "benchmarks" / "results" / "objectives.json"
        previous = json.loads(out.read_text()) if out.exists() else []
        out.write_text(json.dumps(previous + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The demo's first impression: its preset turns tissue-coloured quickly, which the old eps default
did not (benchmarks/bench_objectives.py measures the full comparison; BENCHMARKS.md has it)."""

import numpy as np
import pytest
import torch

from core.config import DEMO_PRESET, TrainConfig
from core.data import open_split, resolve_data, to_model_input
from core.data.transforms import to_uint8
from core.evaluate.colour import colour_w1
from core.generation import generate
from core.train.trainer import Trainer

BUDGET = 150  # steps: about 20 s on 2 CPU cores


def reference_patches(root, cfg, n=256):
    source = open_split(root, "train")
    idx = np.sort(np.random.default_rng(0).choice(len(source), n, replace=False))
    patches = np.stack([source.read(int(i), int(i) + 1)[0] for i in idx])
    source.close()
    return to_uint8(to_model_input(patches, cfg.image_size, cfg.preprocess, "cpu"))


def colour_distance_after(objective: str, steps: int, tmp_path, workdir) -> np.ndarray:
    """Per-channel colour W1 (R, G, B) of 32 EMA samples after `steps` steps of the demo preset."""
    root = resolve_data("demo")
    cfg = TrainConfig(**dict(DEMO_PRESET, objective=objective, max_steps=max(1, steps), sample_every=0,
                             eval_every=0, ckpt_every=10**6, device="cpu")).validate()
    trainer = Trainer(cfg, tmp_path / objective, root)
    if steps:
        trainer.fit()
    with torch.inference_mode():
        images = generate(trainer.ema, trainer.diffusion, 32, cfg.image_size, "ddim", 50, seed=1234).images
    trainer.close()
    return colour_w1(images, reference_patches(root, cfg))


def test_the_preset_is_the_one_place_its_values_live_and_uses_v():
    assert DEMO_PRESET["objective"] == "v" == TrainConfig().objective
    assert TrainConfig(**DEMO_PRESET).validate().data == "demo"


@pytest.mark.slow
def test_demo_preset_samples_move_toward_the_data_colours_and_eps_does_not(workdir, tmp_path):
    """eps's failure is saturated colours the data never has; on the demo data it shows most in the
    red channel (W1 above 20 grey levels at every budget BENCHMARKS.md records, 28-39 at 600 steps,
    against 6-10 for v). At the same budget and seed, v's samples are much closer in every channel.

    The thresholds hold for the trajectory of 2 threads. Another thread count sums in another order
    and trains another trajectory, and at 150 steps of lr 1e-3 the EMA's sample colours still swing
    by 10 grey levels from one trajectory to the next; so this test trains with 2 threads, whatever
    the suite's OMP_NUM_THREADS."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        untrained, v, eps = (colour_distance_after(objective, steps, tmp_path, workdir)
                             for objective, steps in (("v", 0), ("v", BUDGET), ("eps", BUDGET)))
    finally:
        torch.set_num_threads(threads)
    assert v.mean() < 0.6 * untrained.mean(), (untrained, v)
    assert v[0] < 18 < eps[0], (v, eps)
    assert v.mean() < eps.mean(), (v, eps)

"""Sampling a run (`ddpm-tui sample`): check the request, draw from the run's checkpoint
(core.generation), write the grid and the GIF (core.images) and record them as artifacts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from core.config import SEED_MAX
from core.device import pick_device
from core.errors import BadInput
from core.generation import SAMPLE_BATCH, generate, network_passes
from core.images import GIF_SHOWS, display_scale, make_grid, reverse_process_frames, save_gif, save_png
from core.inference import inference_autocast, load_run_model
from core.labels import label_of
from core.loaded_run import load_run
from core.outputs import check_writable
from core.samplers import SAMPLERS, sampler_named
from core.store import queries
from core.store.db import Store
from core.train.resources import check_fits, sampling_memory


@dataclass(frozen=True)
class SampleResult:
    paths: list[Path]
    chain: str  # which chain drew them, e.g. "ddpm: the full chain of 1000 steps"


def check_output(path: Path, suffix: str, option: str) -> None:
    """BadInput unless `path` is a `suffix` file name that can be written (core.outputs)."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{option} {path}: is a directory; give a {suffix} file name")
    if path.suffix.lower() != suffix:
        raise BadInput(f"{option}: expected a {suffix} file name, got {path}")
    check_writable(path, option)


def sample_run(store: Store, run_id, out: Path, n: int = 16, sampler: str = "ddim", steps: int | None = None,
               eta: float = 0.0, guidance: float = 0.0, class_name: str | None = None, gif: Path | None = None,
               seed: int = 0, scale: int = 0, device: str = "auto", gif_show: str = "both",
               checkpoint: int | None = None, on_step: Callable[[int, int], None] | None = None,
               say: Callable[[str], None] | None = None) -> SampleResult:
    """Write a PNG grid of n samples (and optionally a GIF of the reverse process: x_t, the predicted
    x_0, or both side by side) from the newest good checkpoint, or that of step `checkpoint`. `steps`
    defaults to the sampler's own (core.samplers: the full chain for ddpm, 50 for ddim and dpm++).
    Sizes that cannot fit in memory are refused up front. `on_step(done, total)` follows the network steps
    (steps x batches); `say` gets the lines worth showing on the way (a compile before the first batch)."""
    chosen = sampler_named(sampler)
    for name, value in (("n", n), ("steps", steps if steps is not None else 1)):
        if value <= 0:
            raise BadInput(f"--{name}: must be positive, got {value}")
    if not math.isfinite(eta) or not 0 <= eta <= 1:
        raise BadInput(f"--eta: must be a number in [0, 1], got {eta}")
    if eta and not chosen.uses_eta:
        takers = ", ".join(s.name for s in SAMPLERS.values() if s.uses_eta)
        raise BadInput(f"--eta {eta:g}: --sampler {sampler} has no eta (it applies to {takers})")
    if not math.isfinite(guidance) or guidance < 0:
        raise BadInput(f"--guidance: must be a finite number >= 0, got {guidance}")
    if scale < 0:
        raise BadInput(f"--scale: must not be negative, got {scale}")
    if not 0 <= seed <= SEED_MAX:
        raise BadInput(f"--seed: must be in 0..{SEED_MAX}, got {seed}")
    check_output(out, ".png", "--out")
    if gif is not None:
        check_output(gif, ".gif", "--gif")
    if gif_show not in GIF_SHOWS:
        raise BadInput(f"--gif-show: unknown value {gif_show!r} (choose from {', '.join(GIF_SHOWS)})")
    loaded = load_run(store, run_id)
    run, cfg = loaded.record, loaded.cfg
    steps = steps or chosen.steps_for(cfg.timesteps)
    if steps > cfg.timesteps:
        raise BadInput(f"--steps {steps}: more than run {run.id}'s {cfg.timesteps} diffusion steps")
    label = None
    if class_name is not None:
        label = label_of(class_name)
        if not cfg.conditional:
            raise BadInput(f"--class: run {run.id} is unconditional (trained on {cfg.classes})")
    if guidance and not cfg.conditional:
        raise BadInput(f"--guidance: run {run.id} is unconditional; guidance needs a --conditional run")
    factor = scale or display_scale(cfg.image_size)
    frames = 48 if gif else 0
    dev = pick_device(device)
    tile = (cfg.image_size * factor + 2) ** 2 * 3
    check_fits(sampling_memory(cfg, min(n, SAMPLE_BATCH)) + n * tile * (1 + 2 * frames), dev,
               f"sampling {n} images at --scale {factor}{' with a GIF' if gif else ''}",
               "lower --n or --scale")
    net, diffusion, cfg, path, run = load_run_model(store, run.id, device, checkpoint,
                                                    network_passes(n, steps, guidance), say)
    with torch.inference_mode(), inference_autocast(cfg, dev):
        samples = generate(net, diffusion, n, cfg.image_size, sampler, steps, guidance, label, seed,
                           next(net.parameters()).device, eta, frames=frames, on_step=on_step)
    save_png(out, make_grid(samples.images, scale=factor))
    written = {"samples": Path(out)}
    if gif is not None:
        save_gif(gif, reverse_process_frames(samples, gif_show, factor))
        written["gif"] = Path(gif)
    for kind, path in written.items():  # stored once every file is written: a failed GIF stores nothing
        queries.add_artifact(store, run.id, kind, str(path.resolve()), None)
    return SampleResult(list(written.values()), chosen.describe(steps, cfg.timesteps, eta))

"""Loading a run's trained network and sampling from it (`ddpm-tui sample`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from core.config import SEED_MAX, config_from_dict
from core.diffusion import GaussianDiffusion, make_betas
from core.errors import BadInput
from core.labels import label_of
from core.model import build_unet
from core.sample import (
    GIF_SHOWS,
    SAMPLE_BATCH,
    SAMPLERS,
    display_scale,
    generate,
    make_grid,
    reverse_process_frames,
    save_gif,
    save_png,
)
from core.store import queries
from core.store.db import Store
from core.train import checkpoint as ckpt
from core.train.resources import check_fits, sampling_memory
from core.train.trainer import load_weights, pick_device


def load_run_model(store: Store, run_id, device: str = "auto", step: int | None = None):
    """(EMA network in eval mode, diffusion, config, checkpoint path, run) of a run's newest good
    checkpoint, or of the one of `step`."""
    run = queries.get_run(store, run_id)
    cfg = config_from_dict(run.config)
    found = ckpt.choose_checkpoint(Path(run.run_dir) / "checkpoints", cfg, step)
    if found is None:
        raise BadInput(f"run {run.id} has no checkpoint yet in {run.run_dir}/checkpoints")
    path, state = found
    net = build_unet(cfg)
    load_weights(net, state["ema"], path)
    diffusion = GaussianDiffusion(make_betas(cfg.schedule, cfg.timesteps), cfg.objective, cfg.loss)
    return for_inference(net, pick_device(device)), diffusion, cfg, path, run


def for_inference(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The network on `device` in eval mode with channels-last weights: oneDNN's convolutions run
    30-40% faster in that layout on CPU (BENCHMARKS.md), and it is the layout CUDA training uses."""
    return net.to(device).eval().to(memory_format=torch.channels_last)


@dataclass(frozen=True)
class SampleResult:
    paths: list[Path]
    chain: str  # which chain drew them, e.g. "ddpm: the full chain of 1000 steps"


def describe_chain(sampler: str, steps: int, num_timesteps: int, eta: float) -> str:
    if sampler == "ddpm":
        if steps == num_timesteps:
            return f"ddpm: the full chain of {num_timesteps} steps"
        return f"ddpm: respaced to {steps} of {num_timesteps} steps"
    return f"ddim: {steps} of {num_timesteps} steps, eta {eta:g}"


def check_output(path: Path, suffix: str, option: str) -> None:
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{option} {path}: is a directory; give a {suffix} file name")
    if path.suffix.lower() != suffix:
        raise BadInput(f"{option}: expected a {suffix} file name, got {path}")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise BadInput(f"{option} {path}: {parent} is a file, not a directory")


def sample_run(store: Store, run_id, out: Path, n: int = 16, sampler: str = "ddim", steps: int | None = None,
               eta: float = 0.0, guidance: float = 0.0, class_name: str | None = None, gif: Path | None = None,
               seed: int = 0, scale: int = 0, device: str = "auto", gif_show: str = "both",
               checkpoint: int | None = None) -> SampleResult:
    """Write a PNG grid of n samples (and optionally a GIF of the reverse process: x_t, the predicted
    x_0, or both side by side) from the newest good checkpoint, or that of step `checkpoint`. `steps`
    defaults to the full chain for ddpm and 50 for ddim. Sizes that cannot fit in memory are refused
    up front."""
    if sampler not in SAMPLERS:
        raise BadInput(f"--sampler: unknown value {sampler!r} (choose from {', '.join(SAMPLERS)})")
    for name, value in (("n", n), ("steps", steps if steps is not None else 1)):
        if value <= 0:
            raise BadInput(f"--{name}: must be positive, got {value}")
    if not math.isfinite(eta) or not 0 <= eta <= 1:
        raise BadInput(f"--eta: must be a number in [0, 1], got {eta}")
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
    run = queries.get_run(store, run_id)
    cfg = config_from_dict(run.config)
    steps = steps or (cfg.timesteps if sampler == "ddpm" else min(50, cfg.timesteps))
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
    net, diffusion, cfg, path, run = load_run_model(store, run.id, device, checkpoint)
    with torch.inference_mode():
        samples = generate(net, diffusion, n, cfg.image_size, sampler, steps, guidance, label, seed,
                           next(net.parameters()).device, eta, frames=frames)
    save_png(out, make_grid(samples.images, scale=factor))
    written = [Path(out)]
    queries.add_artifact(store, run.id, "samples", str(Path(out).resolve()), None)
    if gif is not None:
        save_gif(gif, reverse_process_frames(samples, gif_show, factor))
        written.append(Path(gif))
        queries.add_artifact(store, run.id, "gif", str(Path(gif).resolve()), None)
    return SampleResult(written, describe_chain(sampler, steps, cfg.timesteps, eta))

"""Loading a run's trained network and sampling from it (`ddpm-tui sample`)."""

from __future__ import annotations

from pathlib import Path

import torch

from core.config import config_from_dict
from core.diffusion import GaussianDiffusion, make_betas
from core.errors import BadInput
from core.model import build_unet
from core.sample import SAMPLERS, display_scale, generate, make_grid, save_gif, save_png
from core.store import queries
from core.store.db import Store
from core.train import checkpoint as ckpt
from core.train.trainer import check_architecture, load_weights, pick_device

CLASS_NAMES = {"non_cancerous": 0, "0": 0, "cancerous": 1, "1": 1}


def load_run_model(store: Store, run_id, device: str = "auto"):
    """(EMA network in eval mode, diffusion, config, checkpoint path) of a run's newest good checkpoint."""
    run = queries.get_run(store, run_id)
    cfg = config_from_dict(run.config)
    found = ckpt.load_latest_good(Path(run.run_dir) / "checkpoints")
    if found is None:
        raise BadInput(f"run {run.id} has no loadable checkpoint in {run.run_dir}/checkpoints")
    path, state = found
    check_architecture(path, state.get("config", {}), cfg)
    dev = pick_device(device)
    net = build_unet(cfg)
    load_weights(net, state["ema"], path)
    diffusion = GaussianDiffusion(make_betas(cfg.schedule, cfg.timesteps), cfg.objective, cfg.loss)
    return net.to(dev).eval(), diffusion, cfg, path, run


def sample_run(store: Store, run_id, out: Path, n: int = 16, sampler: str = "ddim", steps: int = 50,
               eta: float = 0.0, guidance: float = 0.0, class_name: str | None = None, gif: Path | None = None,
               seed: int = 0, scale: int = 0, device: str = "auto") -> list[Path]:
    """Write a PNG grid of n samples (and optionally a GIF of the reverse process); returns the paths."""
    if sampler not in SAMPLERS:
        raise BadInput(f"--sampler: unknown value {sampler!r} (choose from {', '.join(SAMPLERS)})")
    for name, value in (("n", n), ("steps", steps)):
        if value <= 0:
            raise BadInput(f"--{name}: must be positive, got {value}")
    if guidance < 0:
        raise BadInput(f"--guidance: must not be negative, got {guidance}")
    if Path(out).suffix.lower() != ".png":
        raise BadInput(f"--out: expected a .png file name, got {out}")
    if gif is not None and Path(gif).suffix.lower() != ".gif":
        raise BadInput(f"--gif: expected a .gif file name, got {gif}")
    net, diffusion, cfg, path, run = load_run_model(store, run_id, device)
    label = None
    if class_name is not None:
        if class_name not in CLASS_NAMES:
            raise BadInput(f"--class: unknown class {class_name!r} (cancerous or non_cancerous)")
        if not cfg.conditional:
            raise BadInput(f"--class: run {run.id} is unconditional (trained on {cfg.classes})")
        label = CLASS_NAMES[class_name]
    if guidance and not cfg.conditional:
        raise BadInput(f"--guidance: run {run.id} is unconditional; guidance needs a --conditional run")
    with torch.inference_mode():
        images, frames = generate(net, diffusion, n, cfg.image_size, sampler, steps, guidance, label, seed,
                                  next(net.parameters()).device, eta, frames=48 if gif else 0)
    factor = scale or display_scale(cfg.image_size)
    save_png(out, make_grid(images, scale=factor))
    written = [Path(out)]
    queries.add_artifact(store, run.id, "samples", str(Path(out).resolve()), None)
    if gif is not None:
        save_gif(gif, [make_grid(f, scale=factor) for f in frames])
        written.append(Path(gif))
        queries.add_artifact(store, run.id, "gif", str(Path(gif).resolve()), None)
    return written

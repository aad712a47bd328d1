"""Loading a run's trained network for inference (sampling, evaluation, blind tests)."""

from __future__ import annotations

import torch

from core.device import load_weights, pick_device
from core.factory import create_model_and_diffusion
from core.loaded_run import load_run
from core.store.db import Store


def load_run_model(store: Store, run_id, device: str = "auto", step: int | None = None):
    """(EMA network in eval mode, diffusion, config, checkpoint path, run) of a run's newest good
    checkpoint, or of the one of `step`."""
    loaded = load_run(store, run_id)
    run, cfg = loaded.record, loaded.cfg
    path, state = loaded.checkpoint(step)
    net, diffusion = create_model_and_diffusion(cfg)
    load_weights(net, state["ema"], path)
    return for_inference(net, pick_device(device)), diffusion, cfg, path, run


def for_inference(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The network on `device` in eval mode with channels-last weights: oneDNN's convolutions run
    30-40% faster in that layout on CPU (BENCHMARKS.md), and it is the layout CUDA training uses."""
    return net.to(device).eval().to(memory_format=torch.channels_last)

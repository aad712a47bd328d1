"""Loading a run's trained network for inference (sampling, evaluation, blind tests)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch

from core.compilation import compile_cache, compile_network, compiles_inference
from core.config import TrainConfig
from core.device import has_native_bf16, load_weights, pick_device, training_precision
from core.factory import create_model_and_diffusion
from core.loaded_run import load_run
from core.store.db import Store


def load_run_model(store: Store, run_id, device: str = "auto", step: int | None = None, image_passes: int = 0,
                   say: Callable[[str], None] | None = None):
    """(EMA network in eval mode, diffusion, config, checkpoint path, run) of a run's newest good
    checkpoint, or of the one of `step`. `image_passes`, the network passes of one image the job will
    make, decides whether the network is compiled (core.compilation.compiles_inference); `say` is
    told so, as the job's first batch waits for the compile."""
    loaded = load_run(store, run_id)
    run, cfg = loaded.record, loaded.cfg
    path, state = loaded.checkpoint(step)
    net, diffusion = create_model_and_diffusion(cfg)
    load_weights(net, state["ema"], path)
    dev = pick_device(device)
    net = for_inference(net, dev)
    if compiles_inference(cfg.compile, dev, image_passes, cfg.image_size):
        if say:
            say(f"run {run.id}: torch.compile compiles the network for this job of {image_passes:,} network passes "
                f"before its first batch (about 35 s at 96 px on an H200; seconds once its kernels are in "
                f"{compile_cache()}); a run trained with --compile off is never compiled")
        net = compile_network(net)
    return net, diffusion, cfg, path, run


def for_inference(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The network on `device` in eval mode with channels-last weights: oneDNN's convolutions run
    30-40% faster in that layout on CPU (BENCHMARKS.md), and it is the layout CUDA training uses."""
    return net.to(device).eval().to(memory_format=torch.channels_last)


def inference_autocast(cfg: TrainConfig, device: torch.device):
    """The autocast the run trained with (CUDA only), so that sampling and evaluation compute as
    training did."""
    precision = training_precision(cfg.precision, device, has_native_bf16(device)) if device.type == "cuda" else "fp32"
    if precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return nullcontext()

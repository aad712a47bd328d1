"""Drawing samples from a network: n images in bounded memory with any registered sampler
(core.samplers), optionally with snapshots of the chain for a reverse-process GIF. The samplers'
maths is core.diffusion.sampling."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from core.data.transforms import to_uint8
from core.diffusion import GaussianDiffusion
from core.diffusion.sampling import guided, respaced_timesteps
from core.samplers import sampler_named

SAMPLE_BATCH = 256  # images drawn together: memory stays bounded for any n


def network_passes(n: int, steps: int, guidance: float = 0.0) -> int:
    """Passes of one image through the network that drawing n samples in `steps` steps makes; twice as
    many with classifier-free guidance, which predicts with and without the class."""
    return n * steps * (2 if guidance else 1)


def class_labels(n: int, num_classes: int, class_label: int | None, device) -> torch.Tensor | None:
    """Labels for n samples: all `class_label`, or the classes in turn; None for unconditional nets."""
    if not num_classes:
        return None
    if class_label is None:
        return torch.arange(n, device=device) % num_classes
    return torch.full((n,), class_label, device=device, dtype=torch.long)


@dataclass
class Samples:
    """Generated images, and snapshots along the chain when frames were asked for."""

    images: np.ndarray  # uint8 (n, S, S, 3)
    xt_frames: list[np.ndarray] = field(default_factory=list)  # x_t along the chain
    x0_frames: list[np.ndarray] = field(default_factory=list)  # the predicted x_0 at the same steps


@torch.no_grad()
def generate(
    net, diffusion: GaussianDiffusion, n: int, image_size: int, sampler: str = "ddim", steps: int = 50,
    guidance: float = 0.0, class_label: int | None = None, seed: int = 0, device="cpu", eta: float = 0.0,
    frames: int = 0, on_step: Callable[[int, int], None] | None = None,
) -> Samples:
    """n samples, plus up to `frames` snapshots of x_t and of the predicted x_0 along the chain.
    Drawn SAMPLE_BATCH at a time from one seeded generator, so memory stays bounded for any n.
    `on_step(done, total)` is called after every network step of every batch. `sampler` names one
    of core.samplers.SAMPLERS."""
    chosen = sampler_named(sampler)
    num_classes = getattr(net, "num_classes", 0)
    labels = class_labels(n, num_classes, class_label, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    total = min(steps, diffusion.num_timesteps) if steps else diffusion.num_timesteps
    keep = sorted(set(np.linspace(0, total - 1, frames).round().astype(int).tolist())) if frames else []
    images, xt_parts, x0_parts = [], [[] for _ in keep], [[] for _ in keep]
    chain_length = len(respaced_timesteps(diffusion.num_timesteps, total))
    total_steps, done = chain_length * math.ceil(n / SAMPLE_BATCH), 0
    for start in range(0, n, SAMPLE_BATCH):
        size = min(SAMPLE_BATCH, n - start)
        batch_labels = labels[start:start + size] if labels is not None else None
        model_fn = guided(lambda x, t, y: net(x, t, y), batch_labels, guidance, num_classes if num_classes else None)
        shape = (size, 3, image_size, image_size)
        chain = chosen.sample(diffusion, model_fn, shape, steps, generator=generator, device=device, eta=eta)
        x = None
        for i, (_, x, x0) in enumerate(chain):
            done += 1
            if on_step is not None:
                on_step(done, total_steps)
            if i in keep:
                slot = keep.index(i)
                xt_parts[slot].append(to_uint8(x))
                x0_parts[slot].append(to_uint8(x0))
        images.append(to_uint8(x))
    return Samples(np.concatenate(images), [np.concatenate(p) for p in xt_parts],
                   [np.concatenate(p) for p in x0_parts])

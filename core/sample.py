"""Drawing samples from a trained network: image grids (PNG) and reverse-process GIFs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from core.data.transforms import to_uint8
from core.diffusion import GaussianDiffusion
from core.diffusion.sampling import ddim_sample, ddpm_sample, guided

SAMPLERS = ("ddpm", "ddim")
SAMPLE_BATCH = 256


def class_labels(n: int, num_classes: int, class_label: int | None, device) -> torch.Tensor | None:
    """Labels for n samples: all `class_label`, or the classes in turn; None for unconditional nets."""
    if not num_classes:
        return None
    if class_label is None:
        return torch.arange(n, device=device) % num_classes
    return torch.full((n,), class_label, device=device, dtype=torch.long)


@dataclass
class Samples:
    images: np.ndarray  # uint8 (n, S, S, 3)
    xt_frames: list[np.ndarray] = field(default_factory=list)  # x_t along the chain
    x0_frames: list[np.ndarray] = field(default_factory=list)  # the predicted x_0 at the same steps


@torch.no_grad()
def generate(
    net, diffusion: GaussianDiffusion, n: int, image_size: int, sampler: str = "ddim", steps: int = 50,
    guidance: float = 0.0, class_label: int | None = None, seed: int = 0, device="cpu", eta: float = 0.0,
    frames: int = 0,
) -> Samples:
    """n samples, plus up to `frames` snapshots of x_t and of the predicted x_0 along the chain.
    Drawn SAMPLE_BATCH at a time from one seeded generator, so memory stays bounded for any n."""
    num_classes = getattr(net, "num_classes", 0)
    labels = class_labels(n, num_classes, class_label, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    total = min(steps, diffusion.num_timesteps) if steps else diffusion.num_timesteps
    keep = sorted(set(np.linspace(0, total - 1, frames).round().astype(int).tolist())) if frames else []
    images, xt_parts, x0_parts = [], [[] for _ in keep], [[] for _ in keep]
    for start in range(0, n, SAMPLE_BATCH):
        size = min(SAMPLE_BATCH, n - start)
        batch_labels = labels[start:start + size] if labels is not None else None
        model_fn = guided(lambda x, t, y: net(x, t, y), batch_labels, guidance, num_classes if num_classes else None)
        shape = (size, 3, image_size, image_size)
        if sampler == "ddpm":
            chain = ddpm_sample(diffusion, model_fn, shape, generator=generator, device=device, steps=steps)
        else:
            chain = ddim_sample(diffusion, model_fn, shape, steps=steps, eta=eta, generator=generator, device=device)
        x = None
        for i, (_, x, x0) in enumerate(chain):
            if i in keep:
                slot = keep.index(i)
                xt_parts[slot].append(to_uint8(x))
                x0_parts[slot].append(to_uint8(x0))
        images.append(to_uint8(x))
    return Samples(np.concatenate(images), [np.concatenate(p) for p in xt_parts],
                   [np.concatenate(p) for p in x0_parts])


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile uint8 (n, h, w, 3) images, each enlarged `scale` times, into one (H, W, 3) image with
    `pad` white pixels between tiles."""
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = image
    return grid


def display_scale(image_size: int) -> int:
    """Enlargement that shows a patch at about the 96 px of the original PCam patch."""
    return max(1, 96 // image_size)


def save_png(path: str | Path, image: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    iio.imwrite(tmp, image)
    tmp.replace(path)


GIF_SHOWS = ("both", "x0", "xt")


def reverse_process_frames(samples: Samples, show: str = "both", scale: int = 1, gap: int = 8) -> list[np.ndarray]:
    """GIF frames of the reverse process: x_t (early frames are clamped noise), the network's
    prediction of x_0 at the same step (what a person wants to watch), or both side by side."""
    frames = []
    for xt, x0 in zip(samples.xt_frames, samples.x0_frames):
        grids = {"xt": make_grid(xt, scale=scale), "x0": make_grid(x0, scale=scale)}
        if show == "both":
            spacer = np.full((grids["xt"].shape[0], gap, 3), 255, np.uint8)
            frames.append(np.concatenate([grids["xt"], spacer, grids["x0"]], axis=1))
        else:
            frames.append(grids[show])
    return frames


def save_gif(path: str | Path, frames: list[np.ndarray], seconds: float = 4.0, hold_last: int = 8) -> None:
    """An animated GIF of the frames over about `seconds`, the final frame held a little longer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames) + [frames[-1]] * hold_last
    duration_ms = max(20, int(1000 * seconds / len(frames)))
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=duration_ms, loop=0)

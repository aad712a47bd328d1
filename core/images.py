"""Image files of samples: grids (PNG), reverse-process frames and GIFs."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from core.generation import Samples


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
    """Write a uint8 (H, W, 3) image as a PNG, whole or not at all (a temporary file renamed into place)."""
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

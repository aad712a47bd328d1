"""Drawing samples: from a network (generate), from a run's checkpoint (sample_run, `ddpm-tui sample`),
into image grids (PNG) and reverse-process GIFs. The samplers' maths is core.diffusion.sampling."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np
import torch

from core.config import SEED_MAX, config_from_dict
from core.data.transforms import to_uint8
from core.diffusion import GaussianDiffusion
from core.diffusion.sampling import guided, respaced_timesteps
from core.errors import BadInput
from core.labels import label_of
from core.outputs import check_writable
from core.samplers import SAMPLERS, sampler_named
from core.store import queries
from core.store.db import Store
from core.train.resources import check_fits, sampling_memory

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
               checkpoint: int | None = None, on_step: Callable[[int, int], None] | None = None) -> SampleResult:
    """Write a PNG grid of n samples (and optionally a GIF of the reverse process: x_t, the predicted
    x_0, or both side by side) from the newest good checkpoint, or that of step `checkpoint`. `steps`
    defaults to the sampler's own (core.samplers: the full chain for ddpm, 50 for ddim, 20 for dpm++).
    Sizes that cannot fit in memory are refused up front. `on_step(done, total)` follows the network steps (steps x batches)."""
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
    run = queries.get_run(store, run_id)
    cfg = config_from_dict(run.config)
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
    from core.inference import load_run_model  # they load the trainer, which draws its grids from here
    from core.device import pick_device

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
                           next(net.parameters()).device, eta, frames=frames, on_step=on_step)
    save_png(out, make_grid(samples.images, scale=factor))
    written = {"samples": Path(out)}
    if gif is not None:
        save_gif(gif, reverse_process_frames(samples, gif_show, factor))
        written["gif"] = Path(gif)
    for kind, path in written.items():  # stored once every file is written: a failed GIF stores nothing
        queries.add_artifact(store, run.id, kind, str(path.resolve()), None)
    return SampleResult(list(written.values()), chosen.describe(steps, cfg.timesteps, eta))

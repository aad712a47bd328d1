"""Batch preprocessing on the training device: resolution, dihedral augmentation, [-1, 1] pixels.

The crop is taken on the uint8 patches before anything is converted, and the eight symmetries are
one gather over the batch, so a 96 px batch is converted to float once and copied once.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F


def center_crop(x, size: int):
    """The central size x size window of (..., H, W) pixels; PCam labels describe the centre 32x32."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


@functools.lru_cache(maxsize=16)
def dihedral_index(size: int, device: torch.device) -> torch.Tensor:
    """(8, size*size): for each symmetry code, the source pixel of every output pixel. Code c rotates
    by 90*(c % 4) degrees counterclockwise, then mirrors left-right when c >= 4."""
    base = torch.arange(size * size, device=device).reshape(size, size)
    maps = []
    for code in range(8):
        m = torch.rot90(base, code % 4, dims=(0, 1))
        maps.append((torch.flip(m, dims=(1,)) if code >= 4 else m).reshape(-1))
    return torch.stack(maps)


def dihedral(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 symmetries of the square to each (C, S, S) image of the batch (any dtype).
    Tissue has no preferred orientation."""
    b, c, h, w = x.shape
    index = dihedral_index(h, x.device)[codes.to(x.device)]
    return x.reshape(b, c, h * w).gather(2, index[:, None, :].expand(b, c, h * w)).reshape(b, c, h, w)


def to_model_input(
    images: np.ndarray, image_size: int, preprocess: str, device, codes: np.ndarray | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 (B, 96, 96, 3) -> float (B, 3, S, S) in [-1, 1] on `device`."""
    resize = images.shape[1] != image_size and preprocess != "center-crop"
    if images.shape[1] != image_size and not resize:
        images = center_crop(images.transpose(0, 3, 1, 2), image_size).transpose(0, 2, 3, 1)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    if resize:
        x = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", antialias=True,
                          align_corners=False)
    if codes is not None:
        x = dihedral(x, torch.from_numpy(codes))
    x = x.float() / 127.5 - 1.0
    if resize:  # antialiased resampling can overshoot the pixel range
        x = x.clamp(-1.0, 1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, S, S) in [-1, 1] -> uint8 (B, S, S, 3)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()

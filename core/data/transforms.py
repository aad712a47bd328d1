"""Batch preprocessing on the training device: resolution, dihedral augmentation, [-1, 1] pixels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window; PCam labels describe the centre 32x32 of each patch."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def dihedral(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 symmetries of the square per image: rotate by 90*(code % 4) degrees, then
    mirror when code >= 4. Tissue has no preferred orientation."""
    out = x.clone()
    for code in range(1, 8):
        mask = codes == code
        if mask.any():
            y = torch.rot90(x[mask], code % 4, dims=(-2, -1))
            out[mask] = torch.flip(y, dims=(-1,)) if code >= 4 else y
    return out


def to_model_input(
    images: np.ndarray, image_size: int, preprocess: str, device, codes: np.ndarray | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 (B, 96, 96, 3) -> float (B, 3, S, S) in [-1, 1] on `device`."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    if x.shape[-1] != image_size:
        if preprocess == "center-crop":
            x = center_crop(x, image_size)
        else:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    if codes is not None:
        x = dihedral(x, torch.from_numpy(codes).to(device))
    x = (x / 127.5 - 1.0).clamp(-1.0, 1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, S, S) in [-1, 1] -> uint8 (B, S, S, 3)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()

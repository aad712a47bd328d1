"""A configurable U-Net for epsilon/x0/v prediction (Ho et al. 2020; Nichol & Dhariwal 2021).

Levels: one per entry of dim_mults, `res_blocks` residual blocks each, halving the resolution
between levels. Channel layout as in lucidrains' denoising-diffusion-pytorch: on the way down a
level's blocks keep the width they receive (dim at the first level) and its downsampling (pixel
unshuffle + 1x1 conv, Sunkara & Luo 2022) widens to dim * mult; the first middle block widens to
dim * dim_mults[-1]. On the way up a level's blocks run at dim * mult on the input concatenated
with the matching skip, and its upsampling (nearest + 3x3 conv) narrows to the next level's width.
Attention ("linear" or "full") follows the last block of a level at the chosen resolutions, once
going down and once going up; the middle gets full attention whenever attention is on. With
`num_classes` > 0 a class embedding (plus one null class for classifier-free guidance) is added to
the time embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer positional encoding of timesteps (Vaswani et al. 2017, Sec. 3.5), shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def attention_heads(channels: int, head_dim: int = 32) -> int:
    """The most heads of about `head_dim` channels that divide `channels` evenly (at least 1)."""
    return max(h for h in range(1, max(1, channels // head_dim) + 1) if channels % h == 0)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32 if channels % 32 == 0 else 8, channels)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the time (and class) embedding, through SiLU and a linear layer,
    scales and shifts the second norm (the SiLU keeps the embedding MLP's last layer and this
    projection from collapsing into one linear map)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch))
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class FullAttention(nn.Module):
    """Multi-head self-attention over all pixels through scaled_dot_product_attention."""

    def __init__(self, channels: int):
        super().__init__()
        self.heads = attention_heads(channels)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        y = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class LinearAttention(nn.Module):
    """Efficient attention (Shen et al. 2021): softmax(q) over channels, softmax(k) over pixels,
    out = softmax(q)^T (softmax(k) v^T): linear in the number of pixels."""

    def __init__(self, channels: int):
        super().__init__()
        self.heads = attention_heads(channels)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q = q.softmax(dim=-2) * (c // self.heads) ** -0.5
        k = k.softmax(dim=-1)
        context = k @ v.transpose(-1, -2)  # (b, heads, d, d)
        y = context.transpose(-1, -2) @ q  # (b, heads, d, n)
        return x + self.out(y.reshape(b, c, h, w))


ATTENTION = {"full": FullAttention, "linear": LinearAttention}


def Downsample(in_ch: int, out_ch: int) -> nn.Module:
    """Halve the resolution losslessly (pixel unshuffle), then mix to out_ch with a 1x1 conv."""
    return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * in_ch, out_ch, 1))


def Upsample(in_ch: int, out_ch: int) -> nn.Module:
    """Nearest-neighbour doubling, then a 3x3 conv to out_ch."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_ch, out_ch, 3, padding=1))


class UNet(nn.Module):
    """U-Net mapping (x_t, t[, class]) to an image-shaped prediction."""

    def __init__(
        self, image_size: int = 32, in_channels: int = 3, dim: int = 64, dim_mults=(1, 2, 4),
        res_blocks: int = 2, attention: str = "full", attn_resolutions=(16,), dropout: float = 0.0,
        num_classes: int = 0,
    ):
        super().__init__()
        dim_mults = tuple(dim_mults)
        if image_size % 2 ** (len(dim_mults) - 1):
            raise ValueError(f"image size {image_size} not divisible by 2^{len(dim_mults) - 1}")
        self.num_classes = num_classes
        emb_dim = 4 * dim
        self.time_mlp = nn.Sequential(nn.Linear(dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.time_dim = dim
        # index num_classes is the null class used for guidance
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.init_conv = nn.Conv2d(in_channels, dim, 3, padding=1)

        chans = [dim * m for m in dim_mults]
        ins = [dim] + chans[:-1]  # the width each level's down blocks run at
        res = [image_size // 2**i for i in range(len(chans))]
        attn_at = set(attn_resolutions) if attention != "none" else set()

        def attn(ch: int, r: int) -> nn.Module:
            return ATTENTION[attention](ch) if r in attn_at else nn.Identity()

        self.down = nn.ModuleList(
            nn.ModuleList([*(ResBlock(c, c, emb_dim, dropout) for _ in range(res_blocks)), attn(c, r),
                           Downsample(c, out) if i < len(chans) - 1 else nn.Identity()])
            for i, (c, out, r) in enumerate(zip(ins, chans, res))
        )
        mid = chans[-1]
        self.mid1 = ResBlock(ins[-1], mid, emb_dim, dropout)
        self.mid_attn = FullAttention(mid) if attention != "none" else nn.Identity()
        self.mid2 = ResBlock(mid, mid, emb_dim, dropout)
        self.up = nn.ModuleList(
            nn.ModuleList([*(ResBlock(out + c, out, emb_dim, dropout) for _ in range(res_blocks)), attn(out, r),
                           Upsample(out, c) if i else nn.Identity()])
            for i, (c, out, r) in reversed(list(enumerate(zip(ins, chans, res))))
        )
        ch = chans[0]
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, in_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim))
        if self.class_emb is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
            emb = emb + self.class_emb(y)
        h = self.init_conv(x)
        skips = []
        for *blocks, attn, down in self.down:
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            skips[-1] = h = attn(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for *blocks, attn, up in self.up:
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            h = up(attn(h))
        return self.out(h)


def build_unet(cfg) -> UNet:
    """The U-Net a TrainConfig describes."""
    return UNet(
        image_size=cfg.image_size, dim=cfg.dim, dim_mults=cfg.dim_mults_tuple, res_blocks=cfg.res_blocks,
        attention=cfg.attention, attn_resolutions=cfg.attn_resolutions_tuple, dropout=cfg.dropout,
        num_classes=cfg.num_classes,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

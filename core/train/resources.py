"""Will a run fit? The device it asks for, and its memory estimated up front from the config alone,
so a size that cannot fit is refused before anything is stored instead of being found by the
allocator (or the OOM killer) minutes later.

The estimates walk the same layout as core.model.UNet without building it (a width of a million
channels or a hundred thousand blocks costs nothing to estimate); a test keeps the parameter count
equal to the real model's.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

from core.errors import BadInput
from core.model import attention_heads

FLOAT_BYTES = 4
# per parameter in training: weights, gradient, EMA copy, Adam's two moments (fp32 each)
TRAIN_BYTES_PER_PARAM = 5 * FLOAT_BYTES


def conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def resblock_params(c_in: int, c_out: int, emb: int) -> int:
    skip = conv_params(c_in, c_out, 1) if c_in != c_out else 0
    return 2 * c_in + conv_params(c_in, c_out, 3) + linear_params(emb, 2 * c_out) + 2 * c_out \
        + conv_params(c_out, c_out, 3) + skip


def attention_params(c: int) -> int:
    return 2 * c + conv_params(c, 3 * c, 1) + conv_params(c, c, 1)


@dataclass(frozen=True)
class Layout:
    """The U-Net's levels as core.model.UNet builds them."""

    ins: list[int]  # width of each level's down blocks
    chans: list[int]  # width each level widens to (dim * mult)
    res: list[int]  # feature-map size of each level
    attn_at: frozenset
    emb: int


def layout(cfg) -> Layout:
    mults = cfg.dim_mults_tuple
    chans = [cfg.dim * m for m in mults]
    return Layout(ins=[cfg.dim] + chans[:-1], chans=chans, res=[cfg.image_size // 2**i for i in range(len(mults))],
                  attn_at=frozenset(cfg.attn_resolutions_tuple), emb=4 * cfg.dim)


def checkpoint_bytes(cfg) -> int:
    """About the size of one checkpoint before any is written: weights, EMA weights and AdamW's two
    moments in fp32 (16 bytes a parameter), with room for the rest of the state."""
    return parameter_count(cfg) * 20


def parameter_count(cfg) -> int:
    """Number of parameters of build_unet(cfg), computed without building it."""
    lay = layout(cfg)
    n = linear_params(cfg.dim, lay.emb) + linear_params(lay.emb, lay.emb) + conv_params(3, cfg.dim, 3)
    if cfg.num_classes:
        n += (cfg.num_classes + 1) * lay.emb
    last = len(lay.chans) - 1
    for i, (c, out, r) in enumerate(zip(lay.ins, lay.chans, lay.res)):
        n += cfg.res_blocks * resblock_params(c, c, lay.emb)
        n += cfg.res_blocks * resblock_params(out + c, out, lay.emb)
        if r in lay.attn_at:
            n += attention_params(c) + attention_params(out)
        if i < last:
            n += conv_params(4 * c, out, 1)
        if i:
            n += conv_params(out, c, 3)
    mid = lay.chans[-1]
    n += resblock_params(lay.ins[-1], mid, lay.emb) + resblock_params(mid, mid, lay.emb)
    if cfg.attention != "none":
        n += attention_params(mid)
    return n + 2 * lay.chans[0] + conv_params(lay.chans[0], 3, 3)


def _resblock_values(c_in: int, c_out: int, r: int) -> int:
    # kept for the backward pass: input, its norm and SiLU; the conv, norm, modulation, SiLU,
    # dropout and conv outputs, the skip path and the sum
    return (3 * c_in + 8 * c_out) * r * r


def _attention_values(kind: str, c: int, r: int) -> int:
    pixels = r * r
    if kind == "full":
        return 6 * c * pixels + attention_heads(c) * pixels * pixels
    return 8 * c * pixels


def activation_values_per_image(cfg) -> int:
    """Activation values one training image keeps for the backward pass (an estimate)."""
    lay = layout(cfg)
    n = 3 * cfg.image_size ** 2 * 4  # x0, noise, x_t, target
    for c, out, r in zip(lay.ins, lay.chans, lay.res):
        n += cfg.res_blocks * (_resblock_values(c, c, r) + _resblock_values(out + c, out, r) + c * r * r)
        if r in lay.attn_at:
            n += _attention_values(cfg.attention, c, r) + _attention_values(cfg.attention, out, r)
        n += 5 * c * r * r  # down- and upsampling
    mid, r = lay.chans[-1], lay.res[-1]
    n += _resblock_values(lay.ins[-1], mid, r) + _resblock_values(mid, mid, r)
    if cfg.attention != "none":
        n += _attention_values("full", mid, r)
    return n


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    parameter_bytes: int
    activation_bytes: int

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes


def training_memory(cfg) -> MemoryEstimate:
    """Bytes a training step needs at the config's batch size (fp32; autocast only lowers it)."""
    params = parameter_count(cfg)
    return MemoryEstimate(params, params * TRAIN_BYTES_PER_PARAM,
                          activation_values_per_image(cfg) * cfg.batch_size * FLOAT_BYTES)


def largest_batch(cfg, available: int) -> int:
    """The largest --batch-size whose training step fits in `available` bytes by training_memory's
    estimate (0 when not even one image does). The estimate is an upper bound: on an H200 the 96 px
    step used 0.64-0.66 of it in eager bf16 and 0.28-0.31 of it compiled (BENCHMARKS.md)."""
    one = training_memory(dataclasses.replace(cfg, batch_size=1))
    return max(0, (available - one.parameter_bytes) // one.activation_bytes)


def sampling_memory(cfg, batch: int) -> int:
    """Bytes sampling needs for `batch` images at once: the weights, and activations that are not
    kept for a backward pass (a quarter of training's is a generous bound)."""
    return parameter_count(cfg) * FLOAT_BYTES + activation_values_per_image(cfg) * batch * FLOAT_BYTES // 4


def host_memory_available() -> int:
    """MemAvailable from /proc/meminfo (physical memory where that is missing)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_memory_available(device) -> tuple[int, str]:
    """(free bytes, a description) of the training device."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return free, f"GPU {torch.cuda.get_device_name(device)} has"
    return host_memory_available(), "this machine has"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_fits(needed: int, device, what: str, advice: str | Callable[[int], str]) -> None:
    """BadInput naming the estimate when `needed` bytes exceed what the device has free; `advice`
    may be a function of those free bytes, called only then."""
    available, where = device_memory_available(device)
    if needed > available:
        advice = advice(available) if callable(advice) else advice
        raise BadInput(f"{what} needs about {fmt_bytes(needed)}; {where} {fmt_bytes(available)} available ({advice})")


def check_training_fits(cfg, device) -> MemoryEstimate:
    """Refuse a config whose training step would not fit in the device's memory, naming the
    largest --batch-size that would."""
    est = training_memory(cfg)

    def advice(available: int) -> str:
        largest = largest_batch(cfg, available)
        return ((f"--batch-size {largest} fits; or " if largest else "")
                + "lower --batch-size, --dim, --dim-mults or --res-blocks")

    check_fits(est.total, device,
               f"training (--dim {cfg.dim}, --dim-mults {cfg.dim_mults}, --res-blocks {cfg.res_blocks}, "
               f"--batch-size {cfg.batch_size}: {est.parameters:,} parameters, {fmt_bytes(est.parameter_bytes)} "
               f"for weights and optimizer, {fmt_bytes(est.activation_bytes)} of activations)", advice)
    return est


def batch_advice(cfg, device) -> str | None:
    """On a GPU with room for a much larger batch than the config's, a line saying which: a larger
    batch keeps the GPU busier (BENCHMARKS.md: 96 px compiled, batch 256 ran 1.27x the images per
    second of batch 64). None on a CPU or when the batch is already near the largest."""
    if device.type != "cuda":
        return None
    available, where = device_memory_available(device)
    largest = largest_batch(cfg, available)
    if largest < 2 * cfg.batch_size:
        return None
    return (f"--batch-size {cfg.batch_size} needs about {fmt_bytes(training_memory(cfg).total)} by the estimate; "
            f"{where} {fmt_bytes(available)} free, room for --batch-size {largest}: a larger batch keeps the GPU "
            "busier")

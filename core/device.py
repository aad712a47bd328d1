"""The torch device a run computes on, what its CPU can do natively, and loading a checkpoint's
weights into a network: what training, sampling and evaluation all need, kept apart from the
training loop so that loading a model for inference does not import the trainer."""

from __future__ import annotations

from pathlib import Path

import torch

from core.config import check_device
from core.errors import BadInput


def pick_device(choice: str) -> torch.device:
    """The torch device of a `--device` value (auto: CUDA when there is one)."""
    if check_device(choice) == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device is available")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), asked of torch's own
    probe at run time. Without it oneDNN emulates bf16 through fp32, which only adds conversions."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up softly
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def has_native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA GPU that supports it, or such a CPU."""
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()


def training_precision(requested: str, device: torch.device, native_bf16: bool, from_weights: bool = False) -> str:
    """The precision a run computes in on `device`: as asked on CUDA; on a CPU, bf16 only where the
    CPU computes it natively (`native_bf16`) and fp32 otherwise (fp16 autocast is for CUDA).
    `auto` is bf16 where it was measured to train as well as fp32 (BENCHMARKS.md, issue 22): on a
    GPU that has bf16, and on a CPU with native bf16 for a run that continues trained weights
    (`from_weights`); a fresh network on a CPU trains in fp32."""
    if requested == "auto":
        return "bf16" if native_bf16 and (device.type == "cuda" or from_weights) else "fp32"
    if device.type == "cuda" or requested == "fp32" or (requested == "bf16" and native_bf16):
        return requested
    return "fp32"


def load_weights(module: torch.nn.Module, weights: dict, path: Path) -> None:
    """Load a state dict saved at `path` into `module`; BadInput when it does not fit the model."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        raise BadInput(f"{path}: checkpoint does not fit this model ({str(exc).splitlines()[0]})") from None

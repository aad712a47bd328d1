"""torch.compile of the U-Net for training: whether a run compiles, in which mode, and where the
compiled kernels are kept so that later runs and resumes skip the compile.

Measured on one H200 (BENCHMARKS.md, "Model FLOP utilisation on a GPU"): the default mode doubles
the training step's images per second at 96 px after a compile of about 90 s; a later process that
compiles the same network finds its kernels in the cache and starts in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core.data.locate import cache_dir

# "default": Inductor's Triton kernels, the one mode measured: "reduce-overhead" (CUDA graphs) did not
# finish its warm-up in the roughly 70 s left to it on the H200, and "max-autotune" was not reached (BENCHMARKS.md).
COMPILE_MODE = "default"
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def compiles(choice: str, device: torch.device, deterministic: bool = False) -> bool:
    """Whether a run with `--compile choice` compiles its network on `device`. auto compiles on CUDA
    (on 2 CPU cores the 32 px network took 95 s to compile, then stepped no faster in fp32), except for a
    --deterministic run: its bit-exact resume on CUDA was checked with eager kernels, not with
    Inductor's (BENCHMARKS.md), so auto keeps it eager."""
    return choice == "on" or (choice == "auto" and device.type == "cuda" and not deterministic)


def compile_cache() -> Path:
    """Where Inductor keeps compiled kernels: $TORCHINDUCTOR_CACHE_DIR when the user set it, else a
    folder of this tool's cache (torch's own default is under /tmp, which a reboot empties; torch
    also writes that default into the variable once it has used it, so that value counts as unset)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    given = os.environ.get(CACHE_ENV)
    if given and os.path.abspath(given) != os.path.abspath(default_cache_dir()):
        return Path(given)
    return cache_dir() / "torch-compile"


def compile_network(net: torch.nn.Module) -> torch.nn.Module:
    """`net` under torch.compile in COMPILE_MODE, its kernels cached in compile_cache(). The compile
    itself happens at the first call."""
    os.environ[CACHE_ENV] = str(compile_cache())
    return torch.compile(net, mode=COMPILE_MODE)

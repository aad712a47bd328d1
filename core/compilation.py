"""torch.compile of the U-Net: whether a training run or an inference job (sampling, evaluation,
a synthetic set) compiles, in which mode, and where the compiled kernels are kept so that later
runs, resumes and jobs skip the compile.

Measured on one H200 (BENCHMARKS.md, "Model FLOP utilisation on a GPU"): the default mode doubles
the training step's images per second at 96 px after a compile of about 90 s, and runs DDIM-50 3.2x
and the bits/dim bound 3.3x faster after 34-38 s; a later process that compiles the same network
finds its kernels in the cache and starts in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core.data.locate import cache_dir

# "default": Inductor's Triton kernels. "reduce-overhead" (CUDA graphs) stepped 1,510 img/s on the H200,
# 2-14% above default's 1,324 and 1,476 in other processes, whose own two timings differ by 11%: not shown
# faster. "max-autotune" was not reached (BENCHMARKS.md).
COMPILE_MODE = "default"
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
# A cold compile of the inference graph took 34-38 s on the H200 at 96 px, after which a network pass
# took 0.28-0.29 ms less per image (DDIM-50 and the bound). A job's last, smaller batch compiles once
# more, so an inference job pays off from about two compiles' worth of passes: 250,000 image passes at
# 96 px (5,000 DDIM-50 samples, the exact bound of 250 images). Other sizes are scaled by their pixel
# count, an assumption: only 96 px was measured.
INFERENCE_BREAK_EVEN_PIXEL_PASSES = 250_000 * 96 * 96


def compiles(choice: str, device: torch.device, deterministic: bool = False) -> bool:
    """Whether a run with `--compile choice` compiles its network on `device`. auto compiles on CUDA
    (on 2 CPU cores the 32 px network took 95 s to compile, then stepped no faster in fp32), except for a
    --deterministic run: its bit-exact resume on CUDA was checked with eager kernels, not with
    Inductor's (BENCHMARKS.md), so auto keeps it eager."""
    return choice == "on" or (choice == "auto" and device.type == "cuda" and not deterministic)


def compiles_inference(choice: str, device: torch.device, image_passes: int, image_size: int) -> bool:
    """Whether an inference job of `image_passes` network passes of one `image_size` image compiles the
    network of a run trained with `--compile choice`: on CUDA, when the job is long enough to win back
    the compile (INFERENCE_BREAK_EVEN_PIXEL_PASSES), unless the run was told --compile off."""
    return (choice != "off" and device.type == "cuda"
            and image_passes * image_size ** 2 >= INFERENCE_BREAK_EVEN_PIXEL_PASSES)


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

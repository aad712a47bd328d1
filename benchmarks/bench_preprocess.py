"""Batch preprocessing throughput: uint8 patches from the stream -> model input, side by side with
the implementation it replaced (kept below as the reference), and the stream itself.

    .venv/bin/python benchmarks/bench_preprocess.py

Prints img/s per configuration (median of --rounds, each at least --seconds long, the two
implementations alternating) and the ratio new / previous.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import PatchStream, open_split  # noqa: E402
from core.data.transforms import to_model_input  # noqa: E402


def previous_to_model_input(images, image_size, preprocess, device, codes=None):
    """The implementation before this change: float conversion of the whole 96 px patch, then the
    crop, then one boolean-mask copy per symmetry code."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    if x.shape[-1] != image_size:
        if preprocess == "center-crop":
            top = (x.shape[-1] - image_size) // 2
            x = x[..., top:top + image_size, top:top + image_size]
        else:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    if codes is not None:
        codes_t = torch.from_numpy(codes).to(device)
        out = x.clone()
        for code in range(1, 8):
            mask = codes_t == code
            if mask.any():
                y = torch.rot90(x[mask], code % 4, dims=(-2, -1))
                out[mask] = torch.flip(y, dims=(-1,)) if code >= 4 else y
        x = out
    return (x / 127.5 - 1.0).clamp(-1.0, 1.0).contiguous()


def rate(fn, seconds: float, batch: int) -> float:
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch, 96, 96, 3), dtype=np.uint8)
    codes = rng.integers(0, 8, args.batch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(f"{'config':<22} {'previous img/s':>15} {'new img/s':>12} {'ratio':>7}")
    for size, preprocess in ((96, "center-crop"), (64, "center-crop"), (32, "center-crop"), (32, "resize")):
        assert torch.equal(previous_to_model_input(images, size, preprocess, "cpu", codes),
                           to_model_input(images, size, preprocess, "cpu", codes))
        old, new = [], []
        for _ in range(args.rounds):
            old.append(rate(lambda: previous_to_model_input(images, size, preprocess, "cpu", codes), args.seconds,
                            args.batch))
            new.append(rate(lambda: to_model_input(images, size, preprocess, "cpu", codes), args.seconds, args.batch))
        o, n = statistics.median(old), statistics.median(new)
        print(f"{f'{size} px {preprocess}':<22} {o:>15,.0f} {n:>12,.0f} {n / o:>6.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        import h5py

        root = Path(tmp)
        x = rng.integers(0, 256, (8192, 96, 96, 3), dtype=np.uint8)
        for split in ("train",):
            with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
                f.create_dataset("x", data=x, chunks=(1, 96, 96, 3))
            with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
                f.create_dataset("y", data=(np.arange(len(x)) % 2).astype(np.uint8).reshape(-1, 1, 1, 1))
        source = open_split(root, "train")
        stream = PatchStream(source, np.arange(len(source)), args.batch, seed=0)
        stream.next_batch()
        streamed = statistics.median(rate(stream.next_batch, args.seconds, args.batch) for _ in range(args.rounds))
        stream.close()
        source.close()
    print(f"{'PatchStream (h5, 96 px)':<22} {streamed:>15,.0f} img/s (uint8 batches with dihedral codes)")


if __name__ == "__main__":
    main()

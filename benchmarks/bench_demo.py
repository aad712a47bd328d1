"""The demo's first impression, timed as a user meets it: `ddpm-tui demo --no-tui --steps N` from a
fresh working directory, then the colour distance of every sample grid it wrote (one per 100
steps) against 256 training patches, with the time the grid appeared after start-up.

    .venv/bin/python benchmarks/bench_demo.py [--steps 300] [--keep DIR]

Goal (issue: the demo's first impression): tissue-coloured grids within 3 minutes of start-up on
2 CPU cores, i.e. a colour distance within 2x of real against real.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import DEMO_PRESET, TrainConfig  # noqa: E402
from core.data import open_split, to_model_input  # noqa: E402
from core.data.demo import demo_dataset_path  # noqa: E402
from core.data.transforms import to_uint8  # noqa: E402
from core.evaluate.colour import colour_w1  # noqa: E402


def grid_tiles(path: Path, size: int = 32, scale: int = 3, pad: int = 2, n: int = 16, cols: int = 4) -> np.ndarray:
    """The images of a trainer's sample grid (make_grid's layout), at their own resolution."""
    grid = iio.imread(path)
    tile = size * scale
    tiles = []
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (tile + pad), pad + c * (tile + pad)
        tiles.append(grid[top:top + tile:scale, left:left + tile:scale, :3])
    return np.stack(tiles)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300, help="the demo's training steps (its own default: 300)")
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep it, to look at the grids")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
    with (contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        cache = Path(tmp) / "cache"
        env = dict(os.environ, DDPM_TUI_CACHE=str(cache), PYTHONPATH=str(ROOT))
        env.pop("DDPM_TUI_DB", None)
        env.pop("DDPM_TUI_RUNS", None)
        root = demo_dataset_path(cache)  # built before the clock starts, as on any run after the first
        start = time.time()
        subprocess.run([sys.executable, "-m", "ddpm_tui", "demo", "--no-tui", "--steps", str(args.steps)], cwd=tmp,
                       env=env, check=True, stderr=subprocess.DEVNULL)
        total = time.time() - start
        cfg = TrainConfig(**DEMO_PRESET)
        source = open_split(root, "train")
        idx = np.sort(np.random.default_rng(0).choice(len(source), 256, replace=False))
        reference = to_uint8(to_model_input(np.stack([source.read(int(i), int(i) + 1)[0] for i in idx]),
                                            cfg.image_size, cfg.preprocess, "cpu"))
        source.close()
        print(f"demo --no-tui --steps {args.steps}: {total:.0f} s in all")
        for grid in sorted((Path(tmp) / "runs" / "1" / "samples").glob("step-*.png")):
            w1 = colour_w1(grid_tiles(grid), reference)
            print(f"  {grid.name}: written {grid.stat().st_mtime - start:5.0f} s after start-up, colour W1 R/G/B "
                  f"{' / '.join(f'{v:.1f}' for v in w1)} (mean {w1.mean():.1f})")


if __name__ == "__main__":
    main()

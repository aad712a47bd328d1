"""Does the product's sampling and bits/dim give the same results with the network compiled?

Trains a tiny run on the demo data, then runs `ddpm-tui sample` and `ddpm-tui eval --metrics nll`
twice each in this process: eager, then with core.compilation's rule told to compile (torch.compile
for real, Inductor's kernels). The jobs are sized so that each meets a last, smaller batch (260
samples in batches of 256; the bound of 70 patches in chunks of 64), which compiles again. Prints
each job's time and the largest difference between the two results.

    python benchmarks/check_compiled_inference.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY = ["--dim", "16", "--dim-mults", "1,2", "--res-blocks", "1", "--attention", "none", "--batch-size", "8",
        "--timesteps", "50", "--warmup-steps", "2", "--max-steps", "2", "--sample-every", "0", "--eval-every", "0"]


def cli(*args: str) -> None:
    from ddpm_tui.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        if exc.code:
            raise SystemExit(f"ddpm-tui {' '.join(map(str, args))}: exit {exc.code}") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ddpm-compiled-inference-"))
    os.chdir(folder)
    os.environ.update(DDPM_TUI_CACHE=str(folder / "cache"), DDPM_TUI_DB=f"sqlite:///{folder / 'runs.db'}",
                      DDPM_TUI_RUNS=str(folder / "runs"))
    from core import inference
    from core.store import Store, queries

    cli("train", "--data", "demo", *TINY, "--device", args.device)
    for mode in ("eager", "compiled"):
        inference.compiles_inference = lambda *rule_args, answer=mode == "compiled": answer
        start = time.perf_counter()
        cli("sample", "1", "--n", "260", "--steps", "3", "--scale", "1", "--device", args.device, "--out", f"{mode}.png")
        sampled = time.perf_counter()
        cli("eval", "1", "--metrics", "nll", "--n", "70", "--nll-timesteps", "all", "--device", args.device)
        print(f"{mode}: sample 260 in {sampled - start:.1f} s, bound of 70 in {time.perf_counter() - sampled:.1f} s",
              flush=True)
    eager, compiled = (iio.imread(folder / f"{mode}.png").astype(int) for mode in ("eager", "compiled"))
    bounds = [e.value for e in queries.evaluations(Store(os.environ["DDPM_TUI_DB"]), [1]) if e.metric == "nll"]
    print(f"samples: largest difference {np.abs(eager - compiled).max()} grey levels; "
          f"bits/dim eager {bounds[0]:.10f}, compiled {bounds[1]:.10f}")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()

"""Is exact resume bit-exact on CUDA? The GPU counterpart of tests/test_resume.py, which needs no GPU.

For each mode (default kernels, then --deterministic): train N steps straight; train the same run
again, SIGKILL it just after its checkpoint at step K, resume it to N; compare the two final
checkpoints tensor by tensor (model and EMA) and the two loss curves. With the product's defaults
the first mode trains under torch.compile and the --deterministic one eager (`--compile auto`).

    python benchmarks/check_cuda_resume.py [--steps 60] [--kill-after 20] [--image-size 32] [--device cuda]
                                           [--train-args '--compile on'] [--modes default,deterministic]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from core.store import Store, queries

MODEL = ["--data", "demo", "--device", "cuda", "--precision", "bf16", "--dim", "64", "--dim-mults", "1,2,4,8",
         "--attention", "linear", "--dropout", "0.1", "--batch-size", "32", "--sample-every", "0",
         "--eval-every", "0", "--seed", "5"]


def train(workdir: Path, args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, DDPM_TUI_DB=f"sqlite:///{workdir / 'runs.db'}", DDPM_TUI_RUNS=str(workdir / "runs"),
               DDPM_TUI_CACHE=str(workdir / "cache"))
    return subprocess.Popen([sys.executable, "-m", "ddpm_tui", "train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    if proc.wait(timeout=600) != 0:
        raise SystemExit(proc.stderr.read())


def last_checkpoint(run_dir: Path) -> dict:
    return torch.load(sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True, map_location="cpu")


def compare(workdir: Path, mode: list[str], steps: int, kill_after: int) -> str:
    common = [*MODEL, *mode, "--max-steps", str(steps), "--ckpt-every", str(kill_after), "--keep-ckpts", "100"]
    finish(train(workdir, common))
    victim = train(workdir, common)
    checkpoint = workdir / "runs" / "2" / "checkpoints" / f"ckpt-{kill_after:08d}.pt"
    while not checkpoint.exists():
        if victim.poll() is not None:
            raise SystemExit(victim.stderr.read())
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = max(int(p.stem.split("-")[1]) for p in (workdir / "runs" / "2" / "checkpoints").glob("ckpt-*.pt"))
    if killed_at == steps:
        return "the kill came too late: nothing tested"
    finish(train(workdir, ["--resume", "2"]))
    a, b = last_checkpoint(workdir / "runs" / "1"), last_checkpoint(workdir / "runs" / "2")
    assert a["step"] == b["step"] == steps
    tensors = [(a[part][key], b[part][key]) for part in ("model", "ema") for key in a[part]]
    differing = [(x - y).abs().max().item() for x, y in tensors if not torch.equal(x, y)]
    store = Store(f"sqlite:///{workdir / 'runs.db'}")
    losses_equal = (queries.metric_series(store, 1, "train/loss")[1] == queries.metric_series(store, 2, "train/loss")[1])
    verdict = "bit-exact" if not differing else f"{len(differing)}/{len(tensors)} tensors differ, max {max(differing):.2e}"
    return f"{verdict}; loss curves {'identical' if losses_equal else 'differ'} (killed after step {killed_at} of {steps})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--kill-after", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    ap.add_argument("--train-args", default="", help="more train options for every run, e.g. '--compile on'")
    ap.add_argument("--modes", default="default,deterministic", help="which of the two to check, in order")
    args = ap.parse_args()
    MODEL.extend(args.train_args.split())
    MODEL[MODEL.index("--device") + 1] = args.device
    MODEL.extend(["--image-size", str(args.image_size)])
    print(torch.__version__, torch.cuda.get_device_name() if args.device == "cuda" else args.device)
    modes = {"default": ("default kernels", []), "deterministic": ("--deterministic", ["--deterministic"])}
    for name, mode in (modes[m] for m in args.modes.split(",")):
        with tempfile.TemporaryDirectory(prefix="ddpm-cuda-resume-") as folder:
            print(f"{name}: {compare(Path(folder), mode, args.steps, args.kill_after)}", flush=True)


if __name__ == "__main__":
    main()

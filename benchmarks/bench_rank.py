"""`ddpm-tui rank --json` of a 48-run sweep with evaluations, and the sweep view's key latency while
evaluations land.

    .venv/bin/python benchmarks/bench_rank.py

Builds a store with a 2 x 2 x 3 (schedule x attention x dim) grid of 4 seeds = 48 finished runs, each
with NLL (256 per-image values), KID and FID evaluations, and 1,000 loss points per run. Then:
1. runs `python -m ddpm_tui rank --sweep 1 --json` 7 times in a subprocess (start-up included),
   alternating with `runs list --json` on the same store;
2. opens the ablation view's sweep tab with Pilot and presses `down` 30 times while a thread adds
   a new evaluation to a run every 0.2 s, timing each key press.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.store import Store, queries  # noqa: E402


def build(url: str) -> list[int]:
    store = Store(url)
    rng = np.random.default_rng(0)
    sweep = queries.create_sweep(store, "bench", {"axes": ["attention", "dim", "schedule"], "seeds": 4, "runs": 48})
    ids = []
    for schedule in ("linear", "cosine"):
        for attention in ("none", "full"):
            for dim in (32, 64, 96):
                for seed in range(4):
                    cfg = {"schedule": schedule, "attention": attention, "dim": dim, "seed": seed, "batch_size": 16}
                    run = queries.create_run(store, cfg, status="finished", sweep_id=sweep.id, total_steps=1000)
                    queries.update_run(store, run.id, step=1000)
                    queries.insert_metrics(store, run.id, [("train/loss_smooth", s, 1 / s, float(s))
                                                           for s in range(1, 1001)])
                    per_image = rng.normal(4 + dim / 100, 0.5, 256).round(5).tolist()
                    queries.add_evaluation(store, run.id, "nll", float(np.mean(per_image)), 3.9, 4.2, 256, "test", 0,
                                           {"per_image": per_image, "timesteps": "all"}, checkpoint_step=1000)
                    for metric, value in (("kid", rng.uniform(0.01, 0.05)), ("fid", rng.uniform(10, 30))):
                        queries.add_evaluation(store, run.id, metric, value, value * 0.8, value * 1.2, 256, "test", 0,
                                               {"per_subset": rng.uniform(0.0, 0.06, 5).tolist()}, checkpoint_step=1000,
                                               sampler="ddim", steps=50, classifier_id=1)
                    ids.append(run.id)
    store.close()
    return ids


async def key_latency(url: str, runs_dir: Path, ids: list[int]) -> list[float]:
    from ddpm_tui.tui.app import DdpmApp
    from core.services.lab import Lab
    from ddpm_tui.tui.screens.ablation import AblationScreen

    app = DdpmApp(Lab(url, runs_dir))
    stop = threading.Event()

    def land_evaluations():
        store = Store(url)
        i = 0
        while not stop.wait(0.2):
            queries.add_evaluation(store, ids[i % len(ids)], "nll", 4.0 + 0.001 * i, 3.9, 4.1, 256, "test", 0,
                                   {"per_image": [4.0] * 256, "timesteps": "all"}, checkpoint_step=1000)
            i += 1

    times = []
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("3")
        await pilot.pause(0.5)
        await pilot.press("ctrl+g")
        screen = app.screen
        assert isinstance(screen, AblationScreen)
        for _ in range(100):
            if screen.ranking is not None:
                break
            await pilot.pause(0.1)
        writer = threading.Thread(target=land_evaluations, daemon=True)
        writer.start()
        table = screen.query_one("#sweep-table")
        table.focus()
        for _ in range(30):
            start = time.perf_counter()
            await pilot.press("down")
            times.append(time.perf_counter() - start)
            await pilot.pause(0.05)
        stop.set()
        writer.join()
    return times


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/runs.db"
        ids = build(url)
        env = dict(os.environ, DDPM_TUI_DB=url)  # the editable install finds the code; PYTHONPATH slows every import
        seconds: dict[str, list[float]] = {"rank": [], "runs": []}
        for _ in range(7):  # alternating with `runs list --json`, the start-up every command pays
            for name, args in (("rank", ["rank", "--sweep", "1", "--json"]), ("runs", ["runs", "list", "--json"])):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "ddpm_tui", *args], env=env, check=True, stdout=subprocess.DEVNULL)
                seconds[name].append(time.perf_counter() - start)
        for name, label in (("rank", "rank --json, 48 runs x 3 metrics"), ("runs", "runs list --json, same store")):
            print(f"{label}: median {statistics.median(seconds[name]):.3f} s "
                  f"(min {min(seconds[name]):.3f}, max {max(seconds[name]):.3f})")
        times = asyncio.run(key_latency(url, Path(tmp) / "runs", ids))
        print(f"sweep view, `down` while an evaluation lands every 0.2 s: median {1000 * statistics.median(times):.0f} ms, "
              f"max {1000 * max(times):.0f} ms over {len(times)} presses")


if __name__ == "__main__":
    main()

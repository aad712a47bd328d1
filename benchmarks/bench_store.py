"""Store speed: metric ingest rate, and `ddpm-tui runs list --json` with a big store.

Builds a fresh database of RUNS runs with POINTS metric rows each (default 1,000 x 1,000 = 1M),
timing the ingest through the same `insert_metrics` call the trainer's logger uses (batches of
BATCH points), then times the real CLI command in a subprocess (Python start-up included). Each
--url (an empty PostgreSQL database, say) is measured after the SQLite file, in the same run.

    .venv/bin/python benchmarks/bench_store.py [--runs 1000] [--points 1000] [--batch 1000] [--keep DIR]
        [--url postgresql+psycopg://USER@HOST/EMPTY_DB ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.config import TrainConfig
from core.store import Store, queries
from core.store.db import redact


def build(url: str, runs: int, points: int, batch: int) -> dict:
    store = Store(url)
    cfg = TrainConfig().to_dict()
    run_ids = [queries.create_run(store, cfg, status="finished", total_steps=points).id for _ in range(runs)]
    rows, seconds = 0, 0.0
    for run_id in run_ids:
        for start in range(0, points, batch):
            chunk = [("train/loss", s, 1.0 / (s + 1), 1e9 + s) for s in range(start, min(points, start + batch))]
            t0 = time.perf_counter()
            rows += queries.insert_metrics(store, run_id, chunk)
            seconds += time.perf_counter() - t0
    store.close()
    return {"rows": rows, "ingest_s": seconds, "rows_per_s": rows / seconds}


def time_runs_list(url: str, repeats: int = 5) -> list[float]:
    env = dict(os.environ, DDPM_TUI_DB=url)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "ddpm_tui", "runs", "list", "--json"], env=env,
                             capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        assert len(json.loads(out.stdout)) > 0
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--keep", type=Path, help="build the database here and keep it (for bench_tui.py)")
    ap.add_argument("--url", action="append", default=[], help="also measure this empty store (repeatable)")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="ddpm-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "runs.db"
    db.unlink(missing_ok=True)
    results = {}
    for url in [f"sqlite:///{db}", *args.url]:
        name = redact(url)
        ingest = build(url, args.runs, args.points, args.batch)
        times = time_runs_list(url)
        results[name] = (ingest["rows_per_s"], statistics.median(times))
        print(f"{name}: ingest {ingest['rows']:,} rows in {ingest['ingest_s']:.1f} s = {ingest['rows_per_s']:,.0f} "
              f"rows/s (goal >= 50,000); runs list --json with {args.runs:,} runs: median "
              f"{statistics.median(times):.3f} s, min {min(times):.3f} s (goal <= 0.5 s)")
    base_rate, base_list = next(iter(results.values()))
    for name, (rate, listing) in list(results.items())[1:]:
        print(f"{name} / SQLite: ingest {rate / base_rate:.2f}x the rows/s, runs list {listing / base_list:.2f}x the time")
    print(f"SQLite database: {db} ({db.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()

"""TUI speed on a big store: first paint of the real app in tmux, its RSS, and key-press latency
while the live refresh ticks (Textual Pilot, in process).

    .venv/bin/python benchmarks/bench_store.py --keep /tmp/ddpm-bench     # 1,000 runs, 1M metric rows
    .venv/bin/python benchmarks/bench_tui.py --db-dir /tmp/ddpm-bench

With --before-tree (a checkout of older code, e.g. a `git worktree`) and --before-db-dir (the same
store at that code's schema), the first paint of that code and of this one alternate, round by
round, and the ratio of their medians is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout


def first_paint(db_dir: Path, size=(120, 40), tree: Path | None = None) -> tuple[float, int]:
    """Seconds from starting `ddpm-tui` (from `tree` when given) until the first run row is on the
    screen, and the app's RSS (kB)."""
    session = f"bench{time.monotonic_ns()}"
    command = f"cd {db_dir} && {f'PYTHONPATH={tree} ' if tree else ''}{sys.executable} -m ddpm_tui"
    t0 = time.perf_counter()
    tmux("new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), command)
    try:
        while True:
            if subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode:
                raise RuntimeError(f"tmux lost the session running the app ({session})")
            screen = tmux("capture-pane", "-p", "-t", session)
            if any(line.split()[:1] == ["1"] and "run-" in line for line in screen.splitlines()):
                elapsed = time.perf_counter() - t0
                break
            if time.perf_counter() - t0 > 30:
                raise RuntimeError("the app did not paint within 30 s:\n" + screen)
            time.sleep(0.01)
        time.sleep(2.0)  # let a few refresh ticks run before reading memory
        pane_pid = tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip()
        pids = subprocess.run(["pgrep", "-f", "-P", pane_pid, "ddpm_tui"], capture_output=True, text=True).stdout.split()
        pid = pids[0] if pids else pane_pid
        rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS"))
        return elapsed, rss
    finally:
        tmux("send-keys", "-t", session, "q")
        time.sleep(0.3)
        tmux("kill-session", "-t", session)


async def key_latency(db_dir: Path, key: str, presses: int = 30) -> list[float]:
    """Seconds each press of `key` takes to be handled while the 1 s refresh keeps ticking."""
    from textual.widgets import DataTable

    from ddpm_tui.tui.app import DdpmApp
    from core.services.lab import Lab

    app = DdpmApp(Lab(f"sqlite:///{db_dir / 'runs.db'}", db_dir / "runs"))
    latencies = []
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#runs-table", DataTable)
        while table.row_count == 0:
            await pilot.pause(0.05)
        for _ in range(presses):
            t0 = time.perf_counter()
            await pilot.press(key)
            latencies.append(time.perf_counter() - t0)
            await pilot.pause(0.1)
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db-dir", type=Path, required=True, help="folder holding runs.db (see bench_store.py --keep)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before-tree", type=Path, help="older code to measure alternately with this one")
    ap.add_argument("--before-db-dir", type=Path, help="with --before-tree: its store")
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("tmux is needed for the first-paint measurement")
    # one session open throughout, so the tmux server is not torn down and started again between
    # launches (a launch racing a server on its way out would lose its session)
    anchor = f"bench-anchor-{time.monotonic_ns()}"
    tmux("new-session", "-d", "-s", anchor, "sleep 3600")
    try:
        measure(args)
    finally:
        tmux("kill-session", "-t", anchor)


def measure(args) -> None:
    if args.before_tree:
        before, after = [], []
        for _ in range(args.repeats):
            before.append(first_paint(args.before_db_dir, tree=args.before_tree)[0])
            after.append(first_paint(args.db_dir, tree=Path(__file__).resolve().parents[1])[0])
        print(f"first paint, {args.repeats} alternating rounds: before median {statistics.median(before):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in before)}), after median {statistics.median(after):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in after)}); after / before {statistics.median(after) / statistics.median(before):.2f}")
        return
    paints = [first_paint(args.db_dir) for _ in range(args.repeats)]
    times = [p[0] for p in paints]
    print(f"first paint: median {statistics.median(times):.2f} s, max {max(times):.2f} s (goal <= 1 s); "
          f"RSS {max(p[1] for p in paints) / 1024:.0f} MB")
    for key, what in (("down", "cursor move"), ("o", "re-sort of all rows")):
        latencies = asyncio.run(key_latency(args.db_dir, key))
        print(f"'{key}' ({what}) while refreshing: median {statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} presses")


if __name__ == "__main__":
    main()

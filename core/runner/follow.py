"""Training under torchrun from the foreground: the ranks run as a child of this process, and the
progress shown is what rank 0 records in the store."""

from __future__ import annotations

import subprocess
import time
from typing import Callable

from core.errors import WorkFailed
from core.executors.base import last_lines
from core.run_dir import RunDir
from core.runner.lifecycle import start_attached
from core.runner.liveness import reconcile
from core.store import LIVE_STATUSES, queries
from core.store.db import Store
from core.train.trainer import StepStats

RANKS_END_S = 30.0  # ranks watch their torchrun agent and end within seconds of it


def recorded_progress(store: Store, run: queries.Run) -> StepStats | None:
    """The run's latest training step as the store has it (None before the first one)."""
    summary = queries.summaries(store, [run.id]).get(run.id, {})
    loss = summary.get("train/loss")
    if loss is None:
        return None
    rate = summary.get("img_per_s", {}).get("last", 0.0)
    batch = queries.global_batch(run.config)
    step, total = loss["last_step"], run.total_steps
    return StepStats(step, total, loss["last"], rate, summary.get("lr", {}).get("last", 0.0),
                     (total - step) * batch / rate if rate else 0.0,
                     int(summary.get("nonfinite_total", {}).get("last", 0)))


def follow_attached(store: Store, run: queries.Run, on_step: Callable[[StepStats], None],
                    rdzv_endpoint: str | None = None, poll_s: float = 0.5) -> str:
    """Train `run` under torchrun as a child and report its recorded progress until it ends.
    Returns the final status; WorkFailed when the run failed or its ranks never started."""
    proc = start_attached(store, run.id, rdzv_endpoint)
    shown, interrupted = None, False
    while True:
        try:
            try:
                proc.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
            stats = recorded_progress(store, run)
            if stats is not None and stats.step != shown:
                on_step(stats)
                shown = stats.step
        except KeyboardInterrupt:  # the ranks got the same Ctrl-C: they checkpoint and stop
            interrupted = True
            continue
        if proc.returncode is not None:
            break
    log_path = RunDir(run.run_dir).stdout_log
    if interrupted:  # e.g. while the agent waited for the other nodes: its traceback is no failure
        queries.set_status(store, run.id, "stopped", expect=("running",), match={"started_at": None},
                           reason="interrupted (Ctrl-C) before training started")
    queries.set_status(store, run.id, "failed", expect=("running",), match={"started_at": None},
                       reason=f"torchrun exited with {proc.returncode} before training started: "
                              f"{' | '.join(last_lines(log_path, 5))}")
    final = settled(store, run.id)
    if final.status in LIVE_STATUSES:
        raise WorkFailed(f"run {run.id}: torchrun exited with {proc.returncode}, yet the run's trainer (pid "
                         f"{final.pid}) has not ended after {RANKS_END_S:.0f} s; `ddpm-tui runs kill {run.id}` "
                         "ends it")
    if final.status in ("failed", "crashed"):
        raise WorkFailed(f"run {run.id} {final.status}: {final.exit_reason} (torchrun exited with "
                         f"{proc.returncode}; log: {log_path})")
    return final.status


def settled(store: Store, run_id: int, within_s: float = RANKS_END_S, poll_s: float = 0.2) -> queries.Run:
    """The run once torchrun has exited. Its ranks end with their agent, but a moment later, and a
    rank killed with it never records how the run ended: reconcile until the store no longer has
    the run live (a gone trainer is `crashed`), for at most `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        reconcile(store)
        run = queries.get_run(store, run_id)
        if run.status not in LIVE_STATUSES or time.monotonic() >= deadline:
            return run
        time.sleep(poll_s)

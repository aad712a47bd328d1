"""Reconciliation: a `running` run whose owner is gone becomes `crashed`. Cheap enough to run on
every read (no torch import here).

Every `running` row names its owner: the process that trains it, or, until that process has
started, the one that put it in `running` (the foreground `train`, the `launch` command, a worker's
claim, a resume). On this host the owner's pid and the run directory's trainer lock decide: a live
pid or a held lock is never crashed, however long it has been paused. Heartbeats decide only for
runs owned by another host.
"""

from __future__ import annotations

import os
import socket
import time

from core.executors import CLUSTER_EXECUTORS
from core.runner.processes import pid_alive
from core.runner.run_lock import trainer_holding
from core.store import queries
from core.store.db import Store

STALE_HEARTBEAT_S = 120.0


def owner_fields(pid: int | None = None, pgid: int | None = None) -> dict:
    """Run columns naming this host and `pid` (default: this process) as the owner, with a fresh
    heartbeat. `pgid` is set only for a trainer's own process group (the one to signal)."""
    return dict(host=socket.gethostname(), pid=pid or os.getpid(), pgid=pgid, heartbeat_at=time.time())


def running_fields(pid: int | None = None) -> dict:
    """Columns of a run entering `running` owned by `pid` (default: this process), whose trainer has
    not started yet (started_at is set by the trainer when it takes the run over)."""
    return dict(owner_fields(pid), started_at=None, ended_at=None, exit_reason=None)


def crash_reason(run: queries.Run, host: str, now: float, stale_after: float) -> str | None:
    """Why `run` (status running) has no owner any more, or None while it has one. A run on a cluster
    whose trainer has not started is waiting for its pods (its executor tells how they are)."""
    if run.executor in CLUSTER_EXECUTORS and run.started_at is None:
        return None
    if run.host in (host, None):
        if pid_alive(run.pid) or trainer_holding(run.run_dir) is not None:
            return None
        if run.pid is None:
            return f"no owner process recorded (last step {run.step})"
        return f"process {run.pid} is gone (last step {run.step})"
    if run.heartbeat_at is not None and now - run.heartbeat_at > stale_after:
        return f"no heartbeat from {run.host} for {now - run.heartbeat_at:.0f} s (last step {run.step})"
    return None


def reconcile_eval_jobs(store: Store) -> None:
    """A running evaluation job of this host whose process is gone ends `failed`."""
    host = socket.gethostname()
    for job in queries.eval_jobs(store, status="running"):
        if job.host == host and not pid_alive(job.pid):
            queries.set_eval_job(store, job.id, expect=("running",), status="failed",
                                 reason=f"evaluation process {job.pid} is gone")


def reconcile(store: Store, stale_after: float = STALE_HEARTBEAT_S) -> list[int]:
    """Mark `running` runs whose owner is gone as `crashed` (and settle evaluation jobs likewise);
    returns the crashed runs' ids."""
    reconcile_eval_jobs(store)
    host = socket.gethostname()
    now = queries.database_time(store)  # the clock the heartbeats were stamped with
    crashed = []
    for run in queries.list_runs(store, status="running"):
        reason = crash_reason(run, host, now, stale_after)
        # the owner read above must still be the owner: a launcher hands over to its child
        if reason and queries.set_status(store, run.id, "crashed", reason=reason, expect=("running",),
                                         match={"pid": run.pid, "heartbeat_at": run.heartbeat_at}):
            crashed.append(run.id)
    return crashed

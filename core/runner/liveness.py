"""Reconciliation: a `running` run whose owner is gone becomes `crashed`; one owned by another host
that has gone silent becomes `lost`. Cheap enough to run on every read (no torch import here).

Every `running` row names its owner: the process that trains it, or, until that process has
started, the one that put it in `running` (the foreground `train`, the `launch` command, a worker's
claim, a resume). On this host the owner's pid and the run directory's trainer lock decide: a live
pid or a held lock is never crashed, however long it has been paused. A run owned by another host
is judged by its heartbeat (stamped with the database's clock): a stale one makes it `lost`, not
`crashed`, since a paused process, a network split or a database outage look the same from here.
A lost run returns to `running` when its heartbeat comes back, and becomes `crashed` only when its
own host confirms the process is gone (or, for a cluster run, its executor says the job is gone). A
pid is the run's process only while its start time is the one recorded with it: pids are reused.
"""

from __future__ import annotations

import socket

from core.executors import CLUSTER_EXECUTORS
from core.runner.processes import pid_alive, same_process
from core.runner.run_lock import trainer_holding
from core.store import queries
from core.store.db import Store

STALE_HEARTBEAT_S = 120.0


def verdict(run: queries.Run, host: str, now: float, stale_after: float) -> tuple[str, str] | None:
    """(new status, why) for a `running` or `lost` run whose liveness changed, judged from `host`
    at database time `now`; None while it stays as it is. A run on a cluster whose trainer has not
    started is waiting for its pods (its executor tells how they are)."""
    if run.executor in CLUSTER_EXECUTORS and run.started_at is None:
        return None
    if run.host in (host, None):
        if same_process(run.pid, run.pid_started) or trainer_holding(run.run_dir) is not None:
            return ("running", f"its process {run.pid} on {host} is alive") if run.status == "lost" else None
        if run.pid is None:
            return "crashed", f"no owner process recorded (last step {run.step})"
        if pid_alive(run.pid):
            return "crashed", f"process {run.pid} is gone; its pid now names a later process (last step {run.step})"
        return "crashed", f"process {run.pid} is gone (last step {run.step})"
    silent = None if run.heartbeat_at is None else now - run.heartbeat_at
    if run.status == "running" and silent is not None and silent > stale_after:
        return "lost", f"no heartbeat from {run.host} for {silent:.0f} s (last step {run.step})"
    if run.status == "lost" and silent is not None and silent <= stale_after:
        return "running", f"heartbeat from {run.host} is back"
    return None


def reconcile_eval_jobs(store: Store) -> None:
    """A running evaluation job of this host whose process is gone ends `failed`."""
    host = socket.gethostname()
    for job in queries.eval_jobs(store, status="running"):
        if job.host == host and not pid_alive(job.pid):
            queries.set_eval_job(store, job.id, expect=("running",), status="failed",
                                 reason=f"evaluation process {job.pid} is gone")


def reconcile(store: Store, stale_after: float = STALE_HEARTBEAT_S) -> list[int]:
    """Settle the liveness of every `running` and `lost` run (and of evaluation jobs): gone owners
    are `crashed`, silent remote ones `lost`, lost ones heard from again `running`. Returns the ids
    of the runs that crashed now."""
    reconcile_eval_jobs(store)
    host = socket.gethostname()
    now = queries.database_time(store)  # the clock the heartbeats were stamped with
    crashed = []
    for run in queries.list_runs(store, status="running") + queries.list_runs(store, status="lost"):
        found = verdict(run, host, now, stale_after)
        # the owner read above must still be the owner: a launcher hands over to its child
        if found and queries.set_status(store, run.id, found[0], reason=found[1], expect=(run.status,),
                                        match={"pid": run.pid, "heartbeat_at": run.heartbeat_at}):
            if found[0] == "crashed":
                crashed.append(run.id)
    return crashed

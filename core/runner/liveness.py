"""Reconciliation: a `running` run whose process is gone becomes `crashed`. Cheap enough to run on
every read (no torch import here)."""

from __future__ import annotations

import socket
import time

from core.runner.processes import pid_alive
from core.store import queries
from core.store.db import Store

STALE_HEARTBEAT_S = 120.0


def reconcile(store: Store, stale_after: float = STALE_HEARTBEAT_S) -> list[int]:
    """Mark `running` runs whose process is gone as `crashed`; returns their ids."""
    host = socket.gethostname()
    now = time.time()
    crashed = []
    for run in queries.list_runs(store, status="running"):
        reason = None
        if run.host == host and run.pid and not pid_alive(run.pid):
            reason = f"process {run.pid} is gone (last step {run.step})"
        elif run.heartbeat_at is not None and now - run.heartbeat_at > stale_after:
            reason = f"no heartbeat for {now - run.heartbeat_at:.0f} s (last step {run.step})"
        if reason and queries.set_status(store, run.id, "crashed", reason=reason, expect=("running",)):
            crashed.append(run.id)
    return crashed

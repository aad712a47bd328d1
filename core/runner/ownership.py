"""Who owns a `running` run: the columns that name its owner process (host, pid and the pid's start
time) and stamp its heartbeat. Whoever puts a run in `running` or takes it over writes them;
core.runner.liveness judges them."""

from __future__ import annotations

import os
import socket
import time

from core.runner.processes import process_start_time


def owner_fields(pid: int | None = None, pgid: int | None = None) -> dict:
    """Run columns naming this host and `pid` (default: this process) as the owner, with its start
    time and a fresh heartbeat. `pgid` is set only for a trainer's own process group (the one to signal)."""
    pid = pid or os.getpid()
    return dict(host=socket.gethostname(), pid=pid, pid_started=process_start_time(pid), pgid=pgid,
                heartbeat_at=time.time())


def running_fields(pid: int | None = None) -> dict:
    """Columns of a run entering `running` owned by `pid` (default: this process), whose trainer has
    not started yet (started_at is set by the trainer when it takes the run over)."""
    return dict(owner_fields(pid), started_at=None, ended_at=None, exit_reason=None)

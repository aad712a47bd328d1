"""Executors of this machine: `local` trains a run in one process, `torchrun` in several (torchrun's
agent and its ranks, one process group). Both are started detached and signalled by pid, only on
their own host and only while the pid is still the process the run recorded."""

from __future__ import annotations

import socket

from core.executors.base import Submitted, local_log_tail
from core.run_dir import RunDir
from core.runner.processes import SIGKILL, SIGTERM, same_process, signal_group, spawn_detached, trainer_command
from core.runner.run_lock import trainer_holding


class LocalProcess:
    """One trainer process on this machine."""

    name = "local"
    on_cluster = False

    def submit(self, run, env: dict) -> Submitted:
        command = trainer_command(run)
        return Submitted(process=spawn_detached(command, RunDir(run.run_dir).stdout_log, env=env))

    def status(self, run) -> str:
        """running while its process lives (or a trainer holds its directory), else gone."""
        return "running" if own_process(run) or trainer_holding(run.run_dir) is not None else "gone"

    def logs(self, run, lines: int) -> str:
        return local_log_tail(run.run_dir, lines)

    def stop(self, run) -> bool:
        """SIGTERM to the trainer; before it has taken the run over, to the group of the process
        started for it only (never a launcher or worker that merely claimed the run)."""
        if not own_process(run):
            return False
        return signal_group(run.pgid, None, SIGTERM) if run.started_at is None else signal_group(None, run.pid, SIGTERM)

    def kill(self, run) -> bool:
        """SIGKILL to the trainer's process group (every rank)."""
        if not own_process(run):
            return False
        return signal_group(run.pgid, None if run.started_at is None else run.pid, SIGKILL)


class Torchrun(LocalProcess):
    """Several processes on this machine (or on each node, started by hand: only this node's are
    controlled from here), under a torchrun agent."""

    name = "torchrun"


def local_executor(world_size: int) -> str:
    """The executor of a run of `world_size` processes on this machine."""
    return Torchrun.name if world_size > 1 else LocalProcess.name


def own_process(run) -> bool:
    """Whether the run's recorded pid is, on this host, still the process recorded with it: one
    that ended may have left its pid to a later process, which must not be signalled."""
    return run.host in (None, socket.gethostname()) and same_process(run.pid, run.pid_started)

"""The executor protocol: what starts a run's processes, says how they are, reads their log and
ends them. Each executor (core.executors.local, .k8s, .slurm) implements it for one value of a
run's `executor` column; core.executors looks them up by that name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from core.run_dir import RunDir

JOB_STATES = ("pending", "running", "succeeded", "failed", "gone")
NOT_SUBMITTED = "not submitted"  # a job its user is to submit (a dry run) and has not yet
USER_SUBMITS = "user_submits"  # in a run's stored spec: its job is submitted by its user (a dry run)


@dataclass(frozen=True)
class Submitted:
    """What an executor started for a run: a process of this machine, or a cluster's job."""

    process: object | None = None  # the subprocess.Popen of a local trainer (its parent reaps it)
    external_id: str | None = None  # the cluster's name for the job


class Executor(Protocol):
    """How the runs of one executor are started and controlled. The store's state machine is not
    the executor's: core.runner.lifecycle records what happened, the executor makes it happen."""

    name: ClassVar[str]
    # a scheduler runs the run's job: no process of this host to signal, and what the scheduler says
    # of the job is the truth about it until the trainer takes the run over
    on_cluster: ClassVar[bool]

    def submit(self, run, env: dict) -> Submitted:
        """Start the run's processes (or submit its job) with the environment `env`; the run is
        `running` already and names its owner. A cluster's job replaces the run's earlier one."""

    def status(self, run) -> str:
        """One of JOB_STATES, or NOT_SUBMITTED; raises BadInput or WorkFailed when it cannot be asked."""

    def logs(self, run, lines: int) -> str:
        """The last `lines` lines of the run's log, wherever the executor keeps it."""

    def stop(self, run) -> bool:
        """SIGTERM to the run's processes: its trainer checkpoints and ends. False when nothing
        of the run's was there to signal."""

    def kill(self, run) -> bool:
        """End the run's processes now. False when nothing of the run's was there to end."""


def last_lines(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file ([] when it cannot be read)."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def local_log_tail(run_dir: str | None, lines: int) -> str:
    """The end of the log a trainer writes in its run directory (train.log, else its stdout)."""
    if not run_dir:
        return ""
    for path in (RunDir(run_dir).train_log, RunDir(run_dir).stdout_log):
        if path.is_file():
            return "\n".join(last_lines(path, lines))
    return ""

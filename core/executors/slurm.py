"""SLURM, through submitit: a run is one job of `nodes` tasks (one per node), each running torchrun
with this node's share of the processes; the first node of the allocation hosts the c10d
rendezvous.

submitit (an optional dependency, `pip install 'ddpm-tui[slurm]'`) writes and submits the sbatch
script and keeps the job's logs in `<run_dir>/slurm/`. Its local executor runs the same job on this
machine without SLURM (`--cluster local`): that is how it is tested here, and a way to try a setup.
The store's URL reaches the job through the environment (sbatch exports it), never its script.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput, WorkFailed

RDZV_PORT = 29400
CLUSTERS = ("slurm", "local")


@dataclass(frozen=True)
class Allocation:
    """What a run asks SLURM for."""

    nodes: int = 1
    gpus_per_node: int = 1
    partition: str | None = None
    time_min: int = 24 * 60
    cluster: str = "slurm"  # or submitit's "local" executor: the job runs on this machine

    def check(self) -> "Allocation":
        for name, value in (("nodes", self.nodes), ("gpus-per-node", self.gpus_per_node), ("time", self.time_min)):
            if value < 1:
                raise BadInput(f"--{name}: must be at least 1, got {value}", field=name)
        if self.cluster not in CLUSTERS:
            raise BadInput(f"--cluster: unknown cluster {self.cluster!r} (choose from {', '.join(CLUSTERS)})",
                           field="cluster")
        if self.cluster == "local" and self.nodes > 1:
            raise BadInput(f"--cluster local runs on this machine: --nodes must be 1, got {self.nodes}", field="nodes")
        return self


def _submitit():
    try:
        import submitit
    except ImportError:
        raise BadInput("--executor slurm: submitit is not installed (pip install 'ddpm-tui[slurm]')") from None
    return submitit


def job_folder(run_dir: str | Path) -> Path:
    return Path(run_dir) / "slurm"


def submit(run_id: int, run_dir: str | Path, allocation: Allocation) -> str:
    """Submit run `run_id`; returns its external id `cluster:job_id`."""
    submitit = _submitit()
    executor = submitit.AutoExecutor(folder=job_folder(run_dir), cluster=allocation.cluster)
    parameters = dict(timeout_min=allocation.time_min, nodes=allocation.nodes, tasks_per_node=1,
                      name=f"ddpm-tui-run-{run_id}")
    if allocation.cluster == "slurm":
        parameters.update(gpus_per_node=allocation.gpus_per_node, slurm_signal_delay_s=120)
        if allocation.partition:
            parameters["slurm_partition"] = allocation.partition
    executor.update_parameters(**parameters)
    try:
        job = executor.submit(train_on_node, run_id, allocation.gpus_per_node, allocation.nodes)
    except Exception as exc:  # sbatch refused it (unknown partition, too long a time...)
        raise WorkFailed(f"SLURM refused the job: {str(exc).strip().splitlines()[-1]}") from None
    return f"{allocation.cluster}:{job.job_id}"


def train_on_node(run_id: int, nproc: int, nnodes: int) -> None:
    """The job's task on each node becomes torchrun for this node's ranks (or the trainer itself,
    for one process), so the signals SLURM sends the task reach it: SIGTERM (scancel, the time
    limit) makes the trainer checkpoint and stop. SLURM's early warning before the time limit
    (SIGUSR2) is ignored: the SIGTERM that follows it is the one the trainer acts on."""
    from core.runner.processes import run_command

    hosts = _submitit().JobEnvironment().hostnames
    command = run_command(run_id, nproc, nnodes, f"{hosts[0]}:{RDZV_PORT}" if nnodes > 1 else None)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    os.execv(command[0], command)


def parse_external_id(external_id: str) -> tuple[str, str]:
    cluster, _, job_id = (external_id or "").partition(":")
    return cluster, job_id


def signal_job(external_id: str, kill: bool) -> None:
    """Ask the job to stop (SIGTERM: the trainer checkpoints) or kill it (SIGKILL)."""
    cluster, job_id = parse_external_id(external_id)
    if cluster == "local":  # the job id is the pid of submitit's controller, which passes signals on
        try:
            os.kill(int(job_id), signal.SIGTERM if not kill else signal.SIGINT)
        except ProcessLookupError:
            pass
        return
    result = subprocess.run(["scancel", f"--signal={'KILL' if kill else 'TERM'}", "--full", job_id],
                            capture_output=True, text=True)
    if result.returncode:
        raise WorkFailed(f"scancel {job_id}: {result.stderr.strip() or result.returncode}")


def log_tail(run_dir: str | Path, external_id: str, lines: int) -> str:
    """The end of the job's output on its first node (submitit's `<job>_0_log.out`)."""
    from core.executors import last_lines

    _, job_id = parse_external_id(external_id)
    return "\n".join(last_lines(job_folder(run_dir) / f"{job_id}_0_log.out", lines))


SLURM_STATES = {"PENDING": "pending", "CONFIGURING": "pending", "RUNNING": "running", "COMPLETING": "running",
                "COMPLETED": "succeeded", "FAILED": "failed", "CANCELLED": "failed", "TIMEOUT": "failed",
                "OUT_OF_MEMORY": "failed", "NODE_FAIL": "failed", "PREEMPTED": "failed"}


def job_state(run_dir: str | Path, external_id: str) -> str:
    """pending | running | succeeded | failed | gone (sacct through submitit; for the local cluster,
    whether submitit's controller process is alive)."""
    cluster, job_id = parse_external_id(external_id)
    if cluster == "local":
        from core.runner.processes import pid_alive

        return "running" if pid_alive(int(job_id)) else "gone"
    state = _submitit().SlurmJob(folder=job_folder(run_dir), job_id=job_id).state
    return SLURM_STATES.get(state.split()[0].rstrip("+"), state.lower())

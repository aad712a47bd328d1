"""SLURM, through submitit: a run is one job of `nodes` tasks (one per node), each running torchrun
with this node's share of the processes; the first node of the allocation hosts the c10d
rendezvous. A job warned of preemption or of its time limit (SIGUSR2, `--signal=USR2@120`) has its
trainer checkpoint and is requeued by submitit; the requeued job continues the run from that
checkpoint, up to `--max-restarts` times.

submitit (an optional dependency, `pip install 'ddpm-tui[slurm]'`) writes and submits the sbatch
script and keeps the job's logs in `<run_dir>/slurm/`. Its local executor runs the same job on this
machine without SLURM (`--cluster local`): that is how it is tested here, and a way to try a setup.
The store's URL reaches the job through the environment (sbatch exports it), never its script.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput, WorkFailed
from core.executors.base import Submitted, last_lines, local_log_tail
from core.locations import STORE_ENV
from core.run_dir import RunDir

RDZV_PORT = 29400
CLUSTERS = ("slurm", "local")
MAX_COUNT = 1_000_000
MAX_RESTARTS = 1000
SLURM_NAME = re.compile(r"[A-Za-z0-9_.\-+&|\[\]:*!()]{1,200}")  # names and constraint expressions
PREEMPTED = "preempted"  # the start of the reason a requeued run's status event gives


@dataclass(frozen=True)
class Allocation:
    """What a run asks SLURM for."""

    nodes: int = 1
    gpus_per_node: int = 1
    partition: str | None = None
    time_min: int = 24 * 60
    cluster: str = "slurm"  # or submitit's "local" executor: the job runs on this machine
    max_restarts: int = 3  # requeues after preemption or a time limit
    account: str | None = None
    qos: str | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    constraint: str | None = None

    def check(self) -> "Allocation":
        for name, value in (("nodes", self.nodes), ("gpus-per-node", self.gpus_per_node), ("time", self.time_min),
                            ("cpus-per-task", self.cpus_per_task), ("mem", self.mem_gb)):
            if value is not None and not 1 <= value <= MAX_COUNT:
                raise BadInput(f"--{name}: must be between 1 and {MAX_COUNT}, got {value}", field=name)
        if not 0 <= self.max_restarts <= MAX_RESTARTS:
            raise BadInput(f"--max-restarts: must be between 0 and {MAX_RESTARTS}, got {self.max_restarts}",
                           field="max_restarts")
        for name in ("partition", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None and not SLURM_NAME.fullmatch(value):
                raise BadInput(f"--{name}: not a SLURM name: {value!r}", field=name)
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
    return RunDir(run_dir).slurm_jobs


def submit(run_id: int, run_dir: str | Path, allocation: Allocation) -> str:
    """Submit run `run_id`; returns its external id `cluster:job_id`."""
    submitit = _submitit()
    # submitit counts requeues after a time-limit warning itself; NodeTask counts every requeue
    executor = submitit.AutoExecutor(folder=job_folder(run_dir), cluster=allocation.cluster,
                                     **{f"{allocation.cluster}_max_num_timeout": allocation.max_restarts})
    parameters = dict(timeout_min=allocation.time_min, nodes=allocation.nodes, tasks_per_node=1,
                      name=f"ddpm-tui-run-{run_id}")
    if allocation.cluster == "slurm":
        parameters.update(gpus_per_node=allocation.gpus_per_node, slurm_signal_delay_s=120)
        optional = dict(slurm_partition=allocation.partition, slurm_account=allocation.account,
                        slurm_qos=allocation.qos, cpus_per_task=allocation.cpus_per_task, mem_gb=allocation.mem_gb,
                        slurm_constraint=allocation.constraint)
        parameters.update({k: v for k, v in optional.items() if v is not None})
    executor.update_parameters(**parameters)
    try:
        job = executor.submit(NodeTask(allocation.max_restarts), run_id, allocation.gpus_per_node, allocation.nodes)
    except Exception as exc:  # sbatch refused it (unknown partition, too long a time...)
        raise WorkFailed(f"SLURM refused the job: {str(exc).strip().splitlines()[-1]}") from None
    return f"{allocation.cluster}:{job.job_id}"


class NodeTask:
    """The job's task on each node: torchrun for this node's ranks (or the trainer itself, for one
    process) as a child whose exit is the task's. SIGTERM (scancel, the time limit) is passed on: the
    trainer checkpoints and stops. SLURM's early warning (SIGUSR2, before a preemption or the time
    limit) reaches `checkpoint` through submitit: the trainer checkpoints and stops, the run waits
    for its requeued job, and submitit requeues this task, which continues the run."""

    def __init__(self, max_restarts: int):
        self.max_restarts = max_restarts
        self.child: subprocess.Popen | None = None

    def __call__(self, run_id: int, nproc: int, nnodes: int) -> None:
        from core.runner.processes import run_command

        hosts = _submitit().JobEnvironment().hostnames
        command = run_command(run_id, nproc, nnodes, f"{hosts[0]}:{RDZV_PORT}" if nnodes > 1 else None)
        signal.signal(signal.SIGTERM, lambda signum, _frame: self._pass_on(signum))
        # SLURM signals every process of the step: the warning is this task's to act on (the default
        # action of SIGUSR2 would end the trainer), so the child and its ranks ignore it
        self.child = subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
        code = self.child.wait()
        if code:
            raise WorkFailed(f"the trainer of run {run_id} exited with {code}")

    def _pass_on(self, signum: int) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def checkpoint(self, run_id: int, nproc: int, nnodes: int):
        """Called by submitit on the early warning (first node only): stop the trainer (it
        checkpoints), leave the run waiting for its requeued job, and requeue this task; None (no
        requeue) once the run was preempted `max_restarts` times or ended otherwise."""
        import submitit

        from core.runner.ownership import running_fields
        from core.store import queries
        from core.store.db import Store

        from core.runner.processes import pid_alive

        self._pass_on(signal.SIGTERM)
        # this handler interrupted __call__'s child.wait(), which holds the Popen's wait lock
        while self.child is not None and pid_alive(self.child.pid):
            time.sleep(0.1)
        store = Store(os.environ[STORE_ENV])
        run = queries.get_run(store, run_id)
        restarts = sum(1 for e in queries.status_events(store, run_id) if (e.reason or "").startswith(PREEMPTED))
        if run.status != "stopped" or restarts >= self.max_restarts:
            if run.status == "stopped":
                queries.update_run(store, run_id, exit_reason=f"{PREEMPTED} at step {run.step}; not requeued: "
                                                              f"--max-restarts {self.max_restarts} reached")
            return None
        fields = dict(running_fields(), host="slurm", pid=None, pid_started=None)
        queries.set_status(store, run_id, "running", reason=f"{PREEMPTED} at step {run.step}: checkpointed, requeued "
                                                            f"({restarts + 1} of {self.max_restarts})",
                           expect=("stopped",), **fields)
        return submitit.helpers.DelayedSubmission(NodeTask(self.max_restarts), run_id, nproc, nnodes)


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


class SlurmJob:
    """A run as one SLURM job submitted by submitit (or run by submitit's local executor), stopped
    by scancel (or by a signal to the local executor's controller)."""

    name = "slurm"
    on_cluster = True

    def submit(self, run, env: dict) -> Submitted:
        """Submit the run's job as its stored allocation asks; sbatch exports the store's URL from
        `env` to the job, which never sees it on a command line or in its script."""
        with environment({STORE_ENV: env[STORE_ENV]}):
            return Submitted(external_id=submit(run.id, run.run_dir, Allocation(**run.executor_spec)))

    def status(self, run) -> str:
        return job_state(run.run_dir, run.external_id)

    def logs(self, run, lines: int) -> str:
        return log_tail(run.run_dir, run.external_id, lines) or local_log_tail(run.run_dir, lines)

    def stop(self, run) -> bool:
        signal_job(run.external_id, kill=False)
        return True

    def kill(self, run) -> bool:
        signal_job(run.external_id, kill=True)
        return True


@contextmanager
def environment(values: dict):
    """os.environ with `values` set, as it was again afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

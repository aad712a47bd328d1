"""Executors: what starts a run's processes, and so what stops them and reads their log.

`local` is one process on this machine and `torchrun` several (both signalled by pid, judged by
pid and lock); `k8s` is a Job on a Kubernetes cluster (stopped through its API) and `slurm` a SLURM
job submitted by submitit (stopped by scancel); a cluster's run is judged by the heartbeats its
trainer writes to the shared store once it runs. The run row keeps the executor and the cluster's
name for the run (`external_id`: `namespace/job` on Kubernetes, `slurm:JOBID` on SLURM).
"""

from __future__ import annotations

from pathlib import Path

from core.errors import BadInput, WorkFailed

EXECUTORS = ("local", "torchrun", "k8s", "slurm")
CLUSTER_EXECUTORS = ("k8s", "slurm")
TAIL_MAX = 1_000_000  # lines of a log's tail
POD_LOGS = "pods"  # in a Kubernetes run's directory: its pods' logs, saved before its job is deleted


def check_executor(name: str) -> str:
    if name not in EXECUTORS:
        raise BadInput(f"--executor: unknown executor {name!r} (choose from {', '.join(EXECUTORS)})",
                       field="executor")
    return name


def on_cluster(run) -> bool:
    return run.executor in CLUSTER_EXECUTORS


def cluster_job(run) -> tuple[str, str]:
    """(namespace, job name) of a run on Kubernetes."""
    namespace, _, name = (run.external_id or "").partition("/")
    return namespace, name


def cluster_client():
    """The cluster of the current kubeconfig context (or of the pod this runs in)."""
    from core.executors.k8s import Cluster

    return Cluster()


def last_lines(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file ([] when it cannot be read)."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def local_log_tail(run_dir: str | None, lines: int) -> str:
    for name in ("train.log", "stdout.log"):
        if run_dir and (Path(run_dir) / name).is_file():
            return "\n".join(last_lines(Path(run_dir) / name, lines))
    return ""


def saved_pod_log_tail(run, lines: int) -> str:
    """The tail of the newest saved log of the run's pod 0 (saved by a stop, see end_on_cluster)."""
    _, name = cluster_job(run)
    if not run.run_dir or not name:
        return ""
    saved = sorted((Path(run.run_dir) / POD_LOGS).glob(f"{name}-0-*.log"), key=lambda p: p.stat().st_mtime)
    return "\n".join(last_lines(saved[-1], lines)) if saved else ""


def kubernetes_log_tail(run, lines: int) -> str:
    """Pod 0's log through the API while the job has pods, else the run's own log or the pods' logs
    saved when it was stopped (also where no cluster can be asked: another machine, an outage)."""
    namespace, name = cluster_job(run)
    try:
        return cluster_client().logs(namespace, name, lines) or kept_log_tail(run, lines)
    except (BadInput, WorkFailed):
        if text := kept_log_tail(run, lines):
            return text
        raise


def kept_log_tail(run, lines: int) -> str:
    """A Kubernetes run's log as kept on this machine: its own train.log, else its pods' saved logs."""
    return local_log_tail(run.run_dir, lines) or saved_pod_log_tail(run, lines)


def log_tail(run, lines: int = 200) -> str:
    """The last `lines` lines (1..TAIL_MAX) of a run's log, from wherever its executor keeps it."""
    if not 1 <= lines <= TAIL_MAX:  # a slice [-0:] or [1:] would print the whole log, not a tail
        raise BadInput(f"--tail: must be between 1 and {TAIL_MAX} lines, got {lines}")
    if run.executor == "k8s":
        return kubernetes_log_tail(run, lines)
    if run.executor == "slurm":
        from core.executors import slurm

        return slurm.log_tail(run.run_dir, run.external_id, lines) or local_log_tail(run.run_dir, lines)
    return local_log_tail(run.run_dir, lines)


def end_on_cluster(run, kill: bool) -> None:
    """Stop (SIGTERM: the trainer checkpoints) or kill a run's job on its cluster."""
    if run.executor == "k8s":
        namespace, name = cluster_job(run)
        cluster = cluster_client()
        if run.run_dir:  # deleting the job deletes its pods' logs: keep them for `runs logs`
            cluster.save_logs(namespace, name, Path(run.run_dir) / POD_LOGS)
        cluster.delete(namespace, name, grace_s=0 if kill else None)
    else:
        from core.executors import slurm

        slurm.signal_job(run.external_id, kill)


def job_state(run) -> str:
    """What the cluster says of a run's job: pending | running | succeeded | failed | gone, or
    `unknown (why)` when it cannot be asked."""
    try:
        if run.executor == "k8s":
            namespace, name = cluster_job(run)
            return cluster_client().status(namespace, name)
        from core.executors import slurm

        return slurm.job_state(run.run_dir, run.external_id)
    except (BadInput, WorkFailed) as exc:
        return f"unknown ({exc})"

"""Executors: what starts a run's processes, and so what stops them and reads their log.

`local` is one process on this machine and `torchrun` several (both signalled by pid, judged by
pid and lock); `k8s` is a Job on a Kubernetes cluster (stopped through its API) and `slurm` a SLURM
job submitted by submitit (stopped by scancel); a cluster's run is judged by the heartbeats its
trainer writes to the shared store once it runs. The run row keeps the executor and the cluster's
name for the run (`external_id`: `namespace/job` on Kubernetes, `slurm:JOBID` on SLURM).

Each executor implements one protocol (core.executors.base.Executor); this registry finds a run's
by the name in its `executor` column, so no caller asks which executor a run has. An executor's
module is imported when a run of it is first handled: listing runs never loads the cluster code.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from core.errors import BadInput, WorkFailed
from core.executors.base import Executor


class Registered(NamedTuple):
    module: str
    cls: str
    on_cluster: bool  # the class's own `on_cluster`, here so that asking needs no import


REGISTRY: dict[str, Registered] = {
    "local": Registered("core.executors.local", "LocalProcess", False),
    "torchrun": Registered("core.executors.local", "Torchrun", False),
    "k8s": Registered("core.executors.k8s", "KubernetesJob", True),
    "slurm": Registered("core.executors.slurm", "SlurmJob", True),
}
EXECUTORS = tuple(REGISTRY)
CLUSTER_EXECUTORS = tuple(name for name, registered in REGISTRY.items() if registered.on_cluster)
TAIL_MAX = 1_000_000  # lines of a log's tail


def check_executor(name: str) -> str:
    if name not in REGISTRY:
        raise BadInput(f"--executor: unknown executor {name!r} (choose from {', '.join(EXECUTORS)})",
                       field="executor")
    return name


def executor_class(name: str) -> type[Executor]:
    """The class implementing executor `name`, its module imported on first use."""
    registered = REGISTRY[check_executor(name)]
    return getattr(importlib.import_module(registered.module), registered.cls)


def executor_for(run) -> Executor:
    """The executor of `run` (by its `executor` column)."""
    return executor_class(run.executor)()


def cluster_client():
    """The Kubernetes cluster of the current kubeconfig context (or of the pod this runs in)."""
    from core.executors.k8s_client import Cluster

    return Cluster()


def log_tail(run, lines: int = 200) -> str:
    """The last `lines` lines (1..TAIL_MAX) of a run's log, from wherever its executor keeps it."""
    if not 1 <= lines <= TAIL_MAX:  # a slice [-0:] or [1:] would print the whole log, not a tail
        raise BadInput(f"--tail: must be between 1 and {TAIL_MAX} lines, got {lines}")
    return executor_for(run).logs(run, lines)


def job_state(run) -> str:
    """What a run's executor says of its job: pending | running | succeeded | failed | gone, not
    submitted (a dry run's job not applied yet), or `unknown (why)` when it cannot be asked."""
    try:
        return executor_for(run).status(run)
    except (BadInput, WorkFailed) as exc:
        return f"unknown ({exc})"

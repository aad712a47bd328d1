"""The trainer's side of a Kubernetes job (core.executors.k8s): a pod its job started in place of a
failed one takes the run back, and a pod the cluster disrupted (a preemption, a drained node) hands
the run back to its job, whose next pod continues from the checkpoint just written."""

from __future__ import annotations

import logging
import os

from core.executors.k8s import JOB_ENV, KubernetesJob
from core.runner.heartbeat import CONTROL_REQUESTS
from core.store import queries
from core.store.db import Store

log = logging.getLogger("ddpm_tui.train")


def disrupted_pod(run: queries.Run) -> bool:
    """Whether a stop of `run` came from its Kubernetes cluster, not from its user: `runs stop` and
    `kill` stamp their request in the store before deleting the job."""
    return bool(os.environ.get(JOB_ENV)) and run.status == "running" and run.exit_reason not in CONTROL_REQUESTS


def hand_back_to_job(store: Store, run_id: int, step: int, checkpoint_path: str | None) -> str:
    """After a disruption: leave the run waiting for its job, whose replacement pod continues it
    from the checkpoint just written. Returns "preempted" (the pod then fails, as a disrupted pod,
    which its job's podFailurePolicy does not count)."""
    queries.set_status(store, run_id, "running", reason=f"preempted at step {step}: its job replaces the pod",
                       expect=("running",), started_at=None, host=KubernetesJob.name, pid=None, pgid=None,
                       pid_started=None, heartbeat_at=queries.database_clock(store), step=step,
                       checkpoint_path=checkpoint_path)
    log.info("run %d preempted at step %d: checkpointed; a new pod of its job continues it", run_id, step)
    return "preempted"


def take_back_from_failed_pod(store: Store, run: queries.Run) -> None:
    """A pod that its job started in place of a failed one (--max-restarts) continues the run that
    pod left failed, from its last checkpoint."""
    job = os.environ.get(JOB_ENV)
    if job and run.status == "failed" and (run.external_id or "").endswith(f"/{job}"):
        queries.set_status(store, run.id, "running", reason=f"its job {run.external_id} replaced the failed pod",
                           expect=("failed",), started_at=None, ended_at=None, exit_reason=None)

"""What the faces show, read-only and never ORM objects: a run as `RunView` (its row with its latest
metric summaries and tags), and sweeps, evaluations and blind tests as the store's own frozen
entities (core.store.entities), which need nothing added."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from core.executors import CLUSTER_EXECUTORS
from core.store.entities import BlindTest, Evaluation, Sweep

__all__ = ["BlindTest", "Evaluation", "RunView", "Sweep"]


@dataclass(frozen=True)
class RunView:
    """A run as the faces show it: its row, its latest metric summaries and its tags, read-only."""

    id: int
    name: str
    status: str
    step: int
    total_steps: int
    loss: float | None
    smooth_loss: float | None
    best: float | None  # lowest validation loss (else lowest smoothed training loss)
    val_loss: float | None
    img_per_s: float | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    heartbeat_at: float | None
    host: str | None
    pid: int | None
    exit_reason: str | None
    sweep_id: int | None
    parent_id: int | None
    executor: str
    external_id: str | None  # the cluster's name for the run (Kubernetes job, SLURM job id)
    global_batch: int  # images per optimizer step over all of the run's processes
    run_dir: str | None
    checkpoint_path: str | None
    tags: tuple[str, ...]
    config: Mapping[str, Any]

    @property
    def on_cluster(self) -> bool:
        """Trained by a cluster's job (Kubernetes, SLURM) rather than processes of this machine."""
        return self.executor in CLUSTER_EXECUTORS

    @property
    def writing_samples(self) -> bool:
        """Running past its last step: the trainer writes the final sample grid, its reverse-process
        GIF and the last checkpoint (a minute or more) before it records the run's end."""
        return self.status == "running" and 0 < self.total_steps <= self.step

    @classmethod
    def of(cls, record: dict) -> "RunView":
        """From core.store.queries.run_record."""
        return cls(**{**record, "tags": tuple(record["tags"]), "config": MappingProxyType(dict(record["config"]))})

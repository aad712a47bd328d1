"""A run's folder and what lives in it, named once. Every module that reads or writes a run's files
asks a RunDir for the path instead of joining its own literals, so a file can be renamed or moved in
one place (and a reader cannot look for `train.log` where the writer put `training.log`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        """The run's training options as JSON, written when the folder is made."""
        return self.root / "config.json"

    @property
    def split(self) -> Path:
        """Which patches the run trains and evaluates on (Kaggle layouts only)."""
        return self.root / "split.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        """The trainer's sample grids and the grids drawn on request."""
        return self.root / "samples"

    @property
    def synthetic(self) -> Path:
        """Synthetic PCam sets drawn from the run."""
        return self.root / "synthetic"

    @property
    def evaluations(self) -> Path:
        """Evaluation jobs' logs and the memorisation figures."""
        return self.root / "eval"

    @property
    def train_log(self) -> Path:
        """The trainer's own log."""
        return self.root / "train.log"

    @property
    def stdout_log(self) -> Path:
        """What a detached trainer printed (its stdout and stderr)."""
        return self.root / "stdout.log"

    @property
    def journal(self) -> Path:
        """Metrics written ahead of the store, replayed into it when the store was away."""
        return self.root / "metrics.jsonl"

    @property
    def trainer_lock(self) -> Path:
        """Held (flock) by the one trainer of this folder while it lives."""
        return self.root / "trainer.lock"

    @property
    def pod_logs(self) -> Path:
        """A Kubernetes run's pods' logs, saved before its job is deleted."""
        return self.root / "pods"

    @property
    def slurm_jobs(self) -> Path:
        """submitit's folder for a Slurm run's jobs."""
        return self.root / "slurm"

"""A stored run with its training options parsed and its folder named: what a sampler, an
evaluation, a resume or a synthetic set needs before it starts, read in one call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import TrainConfig, config_from_dict
from core.errors import BadInput
from core.run_dir import RunDir
from core.store import queries
from core.store.db import Store
from core.store.entities import Run


@dataclass(frozen=True)
class LoadedRun:
    record: Run
    cfg: TrainConfig
    files: RunDir | None  # None until the run has a folder (a queued run on a cluster, say)

    @classmethod
    def of(cls, run: Run) -> "LoadedRun":
        return cls(run, config_from_dict(run.config), RunDir(run.run_dir) if run.run_dir else None)

    def checkpoint(self, step: int | None = None, purpose: str = "") -> tuple[Path, dict]:
        """(path, state) of the newest checkpoint that loads and fits the run, or of `step`'s;
        BadInput when there is none yet (`purpose` ends that line, e.g. "; nothing to evaluate")."""
        from core.train import checkpoint as ckpt  # torch: loaded by the commands that read checkpoints only

        found = ckpt.choose_checkpoint(self.files.checkpoints, self.cfg, step) if self.files else None
        if found is None:
            raise BadInput(f"run {self.record.id} has no checkpoint yet in {self.record.run_dir}/checkpoints{purpose}")
        return found


def load_run(store: Store, run_id: int | str) -> LoadedRun:
    """The run with this id (NotFound when there is none), its config and its folder."""
    return LoadedRun.of(queries.get_run(store, run_id))

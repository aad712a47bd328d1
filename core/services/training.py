"""Starting training: a detached run, a queued grid of runs, a detached queue worker."""

from __future__ import annotations

import sys
from pathlib import Path

from core.locations import RUNS_ENV
from core.services.session import Session


class TrainingUseCases(Session):
    def launch(self, cfg, queue: bool = False, sweep_id: int | None = None):
        from core.runner.lifecycle import launch
        return launch(self.store, self.runs_dir, cfg, queue=queue, sweep_id=sweep_id)

    def queue_sweep(self, raw_values: dict, seeds: int, name: str = ""):
        """(sweep, runs, axes) of a checked and queued grid."""
        from core.runner.lifecycle import plan_sweep, queue_sweep
        plan = plan_sweep(self.runs_dir, raw_values, seeds, name=name)
        sweep, runs = queue_sweep(self.store, plan)
        return sweep, runs, plan.axes

    def start_worker(self, slots: int = 1) -> int:
        """A detached queue worker (`python -m core.runner.worker --until-empty`), so queued runs
        train after the TUI closes."""
        from core.runner.lifecycle import child_env
        from core.runner.processes import spawn_detached

        command = [sys.executable, "-m", "core.runner.worker", "--slots", str(slots), "--until-empty"]
        env = child_env(self.store, {RUNS_ENV: str(Path(self.runs_dir).resolve())})
        proc = spawn_detached(command, Path(self.runs_dir) / "worker.log", env=env)
        return proc.pid

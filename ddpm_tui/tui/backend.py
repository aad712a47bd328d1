"""What the screens may do to the store and the runs, in one place: every call here does I/O and
is meant to run in a worker thread. No SQL here either: it goes through core."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from core.runner.liveness import reconcile
from core.store import Store, queries


@dataclass
class Backend:
    db_url: str
    runs_dir: Path

    def __post_init__(self):
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db_url)
        return self._store

    # ---- reads ----------------------------------------------------------------------------------
    def runs(self) -> list[dict]:
        reconcile(self.store)
        return queries.run_records(self.store)

    def run(self, run_id: int) -> dict:
        run = queries.get_run(self.store, run_id)
        return queries.run_record(run, queries.summaries(self.store, [run_id]).get(run_id),
                                  queries.run_tags(self.store, [run_id]).get(run_id))

    def series(self, run_id: int, key: str, max_points: int = 2000):
        return queries.metric_series(self.store, run_id, key, max_points)

    def metric_keys(self, run_id: int) -> list[str]:
        return queries.metric_keys(self.store, run_id)

    def events(self, run_id: int):
        return queries.status_events(self.store, run_id)

    def latest_samples(self, run_id: int) -> Path | None:
        found = [Path(a.path) for a in queries.artifacts(self.store, run_id, "samples")]
        existing = [p for p in found if p.exists()]
        return existing[-1] if existing else None

    def sweeps(self):
        return queries.list_sweeps(self.store)

    # ---- actions --------------------------------------------------------------------------------
    def stop(self, run_id: int):
        from core.runner.lifecycle import stop
        return stop(self.store, run_id)

    def kill(self, run_id: int, grace: float = 10.0):
        from core.runner.lifecycle import kill
        return kill(self.store, run_id, grace=grace)

    def resume(self, run_id: int, queue: bool = False):
        from core.runner.lifecycle import resume
        return resume(self.store, self.runs_dir, run_id, queue=queue)

    def delete(self, run_id: int):
        from core.runner.lifecycle import remove
        return remove(self.store, self.runs_dir, run_id)

    def tag(self, run_id: int, tags: list[str]) -> None:
        queries.add_tags(self.store, run_id, tags)

    def note(self, run_id: int, text: str) -> None:
        queries.add_note(self.store, run_id, text)

    def launch(self, cfg, queue: bool = False, sweep_id: int | None = None):
        from core.runner.lifecycle import launch
        return launch(self.store, self.runs_dir, cfg, queue=queue, sweep_id=sweep_id)

    def sample(self, run_id: int, out: Path, n: int = 16, steps: int = 50) -> list[Path]:
        from core.inference import sample_run
        return sample_run(self.store, run_id, out, n=n, steps=steps, device="auto")

    def start_worker(self, slots: int = 1) -> int:
        """A detached `ddpm-tui worker --until-empty` so queued runs train after the TUI closes."""
        from core.runner.lifecycle import store_url_for_children
        from core.runner.processes import spawn_detached

        command = [sys.executable, "-m", "ddpm_tui", "--db", store_url_for_children(self.store), "--runs-dir",
                   str(Path(self.runs_dir).resolve()), "worker", "--slots", str(slots), "--until-empty"]
        proc = spawn_detached(command, Path(self.runs_dir) / "worker.log", env=dict(os.environ))
        return proc.pid

"""Reading runs and acting on them: list, show, series, artifacts, stop/kill/resume/extend/rm,
tags and notes."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from core.errors import BadInput, WorkFailed
from core.executors import log_tail
from core.runner.liveness import reconcile
from core.services.session import Session
from core.services.views import RunView, SweepView
from core.store import queries


class RunUseCases(Session):
    # ---- reads ----------------------------------------------------------------------------------
    def runs(self) -> list[RunView]:
        reconcile(self.store)
        return [RunView.of(r) for r in queries.run_records(self.store)]

    def run(self, run_id: int) -> RunView:
        run = queries.get_run(self.store, run_id)
        return RunView.of(queries.run_record(run, queries.summaries(self.store, [run_id]).get(run_id),
                                             queries.run_tags(self.store, [run_id]).get(run_id)))

    def series(self, run_id: int, key: str, max_points: int = 2000, after_step: int | None = None):
        """(steps, values, wall times) of one metric series, evenly thinned; with `after_step`,
        only the points after it (what a live chart does not hold yet)."""
        return queries.metric_series(self.store, run_id, key, max_points, after_step)

    def cluster_log(self, run_id: int, lines: int = 200) -> str:
        """The end of a cluster run's log as its executor has it (pod 0's, the job's output); a
        cluster that cannot be asked gives a line saying so instead."""
        try:
            return log_tail(queries.get_run(self.store, run_id), lines)
        except (BadInput, WorkFailed) as exc:
            return f"(the cluster's log is not available: {exc})"

    def metric_keys(self, run_id: int) -> list[str]:
        return queries.metric_keys(self.store, run_id)

    def events(self, run_id: int):
        return queries.status_events(self.store, run_id)

    def sample_grids(self, run_id: int, kind: str = "samples") -> list[tuple[int | None, Path]]:
        """(step, path) of every saved artifact of `kind` of a run that still exists, oldest first
        (samples: PNG grids; gif: reverse-process GIFs)."""
        found = [(a.step, Path(a.path)) for a in queries.artifacts(self.store, run_id, kind)]
        return [(step, path) for step, path in found if path.exists()]

    def latest_samples(self, run_id: int, kind: str = "samples") -> Path | None:
        """The newest existing artifact file of `kind`."""
        grids = self.sample_grids(run_id, kind)
        return grids[-1][1] if grids else None

    def sweeps(self) -> list[SweepView]:
        return [SweepView(s.id, s.name, MappingProxyType(dict(s.spec or {}))) for s in queries.list_sweeps(self.store)]

    def checkpoints(self, run_id: int) -> list[tuple[int, int, float]]:
        """(step, bytes, saved at) of each checkpoint file of a run, oldest first."""
        from core.train.checkpoint import checkpoint_step, list_checkpoints

        run = queries.get_run(self.store, run_id)
        found = []
        for path in list_checkpoints(Path(run.run_dir) / "checkpoints") if run.run_dir else []:
            try:
                stat = path.stat()
            except OSError:
                continue  # pruned meanwhile
            found.append((checkpoint_step(path), stat.st_size, stat.st_mtime))
        return found

    def notes(self, run_id: int) -> list[tuple[float, str]]:
        """(time, text) of a run's notes, oldest first."""
        return [(n.created_at, n.text) for n in queries.notes(self.store, run_id)]

    # ---- actions --------------------------------------------------------------------------------
    def stop(self, run_id: int):
        from core.runner.lifecycle import stop
        return stop(self.store, run_id)

    def kill(self, run_id: int, grace: float = 10.0):
        from core.runner.lifecycle import kill
        return kill(self.store, run_id, grace=grace)

    def resume(self, run_id: int, queue: bool = False, restart: bool = False):
        from core.runner.lifecycle import resume
        return resume(self.store, run_id, queue=queue, restart=restart)

    def delete(self, run_id: int):
        from core.runner.lifecycle import remove
        return remove(self.store, run_id)

    def extend(self, run_id: int, more_steps: int):
        from core.runner.lifecycle import extend
        return extend(self.store, run_id, more_steps)

    def tag(self, run_id: int, tags: list[str]) -> None:
        queries.add_tags(self.store, run_id, tags)

    def note(self, run_id: int, text: str) -> None:
        queries.add_note(self.store, run_id, text)

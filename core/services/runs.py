"""Reading runs and acting on them: list, show, series, artifacts, stop/kill/resume/extend/rm,
tags and notes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from core.errors import BadInput, WorkFailed
from core.executors import CLUSTER_EXECUTORS, log_tail
from core.run_dir import RunDir
from core.runner.liveness import reconcile
from core.services.session import Session
from core.services.views import RunView, Sweep
from core.store import RUN_STATUSES, queries


class RunUseCases(Session):
    # ---- reads ----------------------------------------------------------------------------------
    def runs(self) -> list[RunView]:
        reconcile(self.store)
        return [RunView.of(r) for r in queries.run_records(self.store)]

    def run(self, run_id: int | str) -> RunView:
        run = queries.get_run(self.store, run_id)
        return RunView.of(queries.run_record(run, queries.summaries(self.store, [run.id]).get(run.id),
                                             queries.run_tags(self.store, [run.id]).get(run.id)))

    def run_records(self, status: str | None = None, sweep: int | str | None = None) -> list[dict]:
        """Every run (of `status`, of `sweep`) as a plain record, after judging which are still alive."""
        if status is not None and status not in RUN_STATUSES:
            raise BadInput(f"--status: unknown status {status!r} (choose from {', '.join(RUN_STATUSES)})")
        reconcile(self.store)
        return queries.run_records(self.store, status=status,
                                   sweep_id=None if sweep is None else queries.parse_id(sweep, "sweep"))

    def run_report(self, run_id: int | str) -> dict:
        """One run's record with its status history, notes, summaries, newest artifacts and
        evaluations, and (for a run on a cluster) what the cluster says of its job."""
        reconcile(self.store)
        store = self.store
        r = queries.get_run(store, run_id)
        job_state = None
        if r.executor in CLUSTER_EXECUTORS and r.external_id:
            from core.runner.lifecycle import settle_cluster_run  # imports torch: only for cluster runs

            job_state = settle_cluster_run(store, r)
            r = queries.get_run(store, r.id)
        record = queries.run_record(r, queries.summaries(store, [r.id]).get(r.id), queries.run_tags(store, [r.id]).get(r.id))
        record["job_state"] = job_state
        record["events"] = [{"status": e.status, "reason": e.reason, "at": e.at} for e in queries.status_events(store, r.id)]
        record["notes"] = [{"text": n.text, "at": n.created_at} for n in queries.notes(store, r.id)]
        record["metrics"] = queries.summaries(store, [r.id]).get(r.id, {})
        record["artifacts"] = [{"kind": a.kind, "path": a.path, "step": a.step} for a in queries.artifacts(store, r.id)][-20:]
        record["evaluations"] = [queries.evaluation_record(e)
                                 for e in queries.latest_evaluations(store, [r.id]).get(r.id, {}).values()]
        return record

    def export_records(self, of_sweep: int | str | None = None) -> list[dict]:
        """Every run (of one sweep) with its summaries, tags, notes and ISO-8601 UTC times."""
        sweep_id = None if of_sweep is None else queries.get_sweep(self.store, of_sweep).id
        records = queries.run_records(self.store, sweep_id=sweep_id)
        notes = queries.notes_by_run(self.store, [r["id"] for r in records])
        for r in records:
            r["notes"] = notes.get(r["id"], [])
            for key in ("created_at", "started_at", "ended_at", "heartbeat_at"):
                if r[key] is not None:
                    r[key] = datetime.fromtimestamp(r[key], timezone.utc).isoformat(timespec="seconds")
        return records

    def series(self, run_id: int, key: str, max_points: int = 2000, after_step: int | None = None):
        """(steps, values, wall times) of one metric series, evenly thinned; with `after_step`,
        only the points after it (what a live chart does not hold yet)."""
        return queries.metric_series(self.store, run_id, key, max_points, after_step)

    def log_tail(self, run_id: int | str, lines: int = 200) -> str:
        """The last lines of a run's log (from its executor for a run on a cluster)."""
        return log_tail(queries.get_run(self.store, run_id), lines)

    def cluster_log(self, run_id: int, lines: int = 200) -> str:
        """The end of a cluster run's log as its executor has it (pod 0's, the job's output); a
        cluster that cannot be asked gives a line saying so instead."""
        try:
            return self.log_tail(run_id, lines)
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

    def sweeps(self) -> list[Sweep]:
        return queries.list_sweeps(self.store)

    def checkpoints(self, run_id: int) -> list[tuple[int, int, float]]:
        """(step, bytes, saved at) of each checkpoint file of a run, oldest first."""
        from core.train.checkpoint import checkpoint_step, list_checkpoints

        run = queries.get_run(self.store, run_id)
        found = []
        for path in list_checkpoints(RunDir(run.run_dir).checkpoints) if run.run_dir else []:
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
    def stop(self, run_id: int, wait: float = 0.0):
        from core.runner.lifecycle import stop
        return stop(self.store, run_id, wait=wait)

    def kill(self, run_id: int, grace: float = 10.0):
        from core.runner.lifecycle import kill
        return kill(self.store, run_id, grace=grace)

    def resume(self, run_id: int, queue: bool = False, restart: bool = False, checkpoint: int | None = None):
        from core.runner.lifecycle import resume
        return resume(self.store, run_id, queue=queue, checkpoint=checkpoint, restart=restart)

    def other_nodes_command(self, run, rdzv_endpoint: str | None = None) -> str:
        """The command each further node of a multi-node torchrun run starts its agent with."""
        from core.runner.lifecycle import other_nodes_command
        return other_nodes_command(self.store, run, rdzv_endpoint)

    def delete(self, run_id: int):
        from core.runner.lifecycle import remove
        return remove(self.store, run_id)

    def extend(self, run_id: int, more_steps: int):
        from core.runner.lifecycle import extend
        return extend(self.store, run_id, more_steps)

    def tag(self, run_id: int | str, tags: list[str], remove: bool = False) -> list[str]:
        """Add (or remove) tags; returns the run's tags after."""
        run_id = queries.get_run(self.store, run_id).id
        queries.add_tags(self.store, run_id, tags, remove=remove)
        return queries.run_tags(self.store, [run_id]).get(run_id, [])

    def note(self, run_id: int | str, text: str) -> None:
        queries.add_note(self.store, queries.get_run(self.store, run_id).id, text)

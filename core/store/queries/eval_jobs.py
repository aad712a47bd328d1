"""The worker's queue of evaluations: queued -> running -> finished | failed."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.errors import BadInput
from core.store import entities
from core.store.db import Store, retrying
from core.store.models import EvalJob
from core.store.queries.clock import now
from core.store.queries.rows import entities_from, entity_by_id, select_entities


@retrying
def queue_eval_job(store: Store, run_id: int, metrics: str, n: int, nll_timesteps: str = "all") -> bool:
    """Queue an evaluation of a run for the worker; False when the same one is queued or done already."""
    row = {"run_id": run_id, "metrics": metrics, "n": n, "nll_timesteps": str(nll_timesteps), "status": "queued",
           "created_at": now()}
    if store.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(EvalJob).on_conflict_do_nothing(constraint="uq_eval_job")
    else:
        stmt = sqlite_insert(EvalJob).on_conflict_do_nothing()
    with store.session() as s, s.begin():
        return s.execute(stmt.values(**row)).rowcount > 0


@retrying
def claim_eval_job(store: Store, host: str, pid: int) -> entities.EvalJob | None:
    """Atomically move the oldest queued evaluation to `running` for this owner."""
    with store.session() as s:
        queued = list(s.scalars(select(EvalJob.id).where(EvalJob.status == "queued").order_by(EvalJob.id)))
    for job_id in queued:
        with store.session() as s, s.begin():
            changed = s.execute(update(EvalJob).where(EvalJob.id == job_id, EvalJob.status == "queued").values(
                status="running", host=host, pid=pid, started_at=now(), ended_at=None, reason=None)).rowcount
        if changed:
            return get_eval_job(store, job_id)
    return None


@retrying
def set_eval_job(store: Store, job_id: int, expect: Sequence[str] | None = None, **fields) -> bool:
    """Update an evaluation job (only from the `expect`ed statuses, when given)."""
    if fields.get("status") in ("finished", "failed"):
        fields.setdefault("ended_at", now())
    with store.session() as s, s.begin():
        stmt = update(EvalJob).where(EvalJob.id == job_id)
        if expect is not None:
            stmt = stmt.where(EvalJob.status.in_(tuple(expect)))
        return s.execute(stmt.values(**fields)).rowcount > 0


def get_eval_job(store: Store, job_id: int) -> entities.EvalJob:
    return entity_by_id(store, EvalJob, entities.EvalJob, int(job_id), BadInput(f"no evaluation job with id {job_id}"))


def eval_jobs(store: Store, run_ids: Iterable[int] | None = None, status: str | None = None) -> list[entities.EvalJob]:
    with store.session() as s:
        stmt = select_entities(EvalJob, entities.EvalJob).order_by(EvalJob.id)
        if run_ids is not None:
            stmt = stmt.where(EvalJob.run_id.in_(list(run_ids)))
        if status is not None:
            stmt = stmt.where(EvalJob.status == status)
        return entities_from(s.execute(stmt), entities.EvalJob)

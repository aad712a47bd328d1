"""A run's metric series and their per-key summaries (last, min, max, count), kept exact on insert."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.store.db import Store, retrying
from core.store.models import Metric, MetricSummary


def summaries(store: Store, run_ids: Iterable[int] | None = None) -> dict[int, dict[str, dict]]:
    """{run_id: {key: {last, last_step, min, max, count}}} from the summary table (no scan of metrics)."""
    with store.session() as s:
        stmt = select(MetricSummary)
        if run_ids is not None:
            stmt = stmt.where(MetricSummary.run_id.in_(list(run_ids)))
        out: dict[int, dict[str, dict]] = {}
        for m in s.scalars(stmt):
            out.setdefault(m.run_id, {})[m.key] = {
                "last": m.last, "last_step": m.last_step, "min": m.min, "max": m.max, "count": m.count}
        return out


def _insert_ignoring_duplicates(store: Store):
    if store.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert  # only PostgreSQL users pay its import

        return pg_insert(Metric).on_conflict_do_nothing(index_elements=["run_id", "key", "step"])
    return sqlite_insert(Metric).on_conflict_do_nothing(index_elements=["run_id", "key", "step"])


@retrying
def insert_metrics(store: Store, run_id: int, points: Sequence[tuple[str, int, float, float]]) -> int:
    """Insert (key, step, value, wall_time) points; points already stored are skipped, so replaying
    a journal is idempotent. Updates the per-key summaries with exactly the new points.
    Returns how many points were new."""
    if not points:
        return 0
    rows = [{"run_id": run_id, "key": k, "step": int(st), "value": float(v), "wall_time": float(w)}
            for k, st, v, w in points]
    with store.session() as s, s.begin():
        stmt = _insert_ignoring_duplicates(store).returning(Metric.key, Metric.step, Metric.value)
        inserted = s.execute(stmt, rows).all() if len(rows) > 1 else s.execute(stmt.values(rows)).all()
        by_key: dict[str, list[tuple[int, float]]] = {}
        for key, step, value in inserted:
            by_key.setdefault(key, []).append((step, value))
        existing = {m.key: m for m in s.scalars(
            select(MetricSummary).where(MetricSummary.run_id == run_id, MetricSummary.key.in_(list(by_key))))}
        for key, new in by_key.items():
            last_step, last = max(new)
            values = [v for _, v in new]
            m = existing.get(key)
            if m is None:
                s.add(MetricSummary(run_id=run_id, key=key, last=last, last_step=last_step,
                                    min=min(values), max=max(values), count=len(new)))
            else:
                if last_step >= m.last_step:
                    m.last, m.last_step = last, last_step
                m.min, m.max = min(m.min, *values), max(m.max, *values)
                m.count += len(new)
    return len(inserted)


def metric_series(store: Store, run_id: int, key: str, max_points: int = 2000,
                  after_step: int | None = None) -> tuple[list[int], list[float], list[float]]:
    """(steps, values, wall_times) of one series, evenly thinned to at most `max_points`; with
    `after_step`, only the points after that step (what a live chart has not read yet)."""
    where = [Metric.run_id == run_id, Metric.key == key]
    if after_step is not None:
        where.append(Metric.step > after_step)
    with store.session() as s:
        n = s.scalar(select(func.count()).select_from(Metric).where(*where))
        stmt = select(Metric.step, Metric.value, Metric.wall_time).where(*where).order_by(Metric.step)
        rows = s.execute(stmt).all()
    if n and n > max_points:
        stride = -(-n // max_points)
        rows = rows[::stride]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def metric_keys(store: Store, run_id: int) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(MetricSummary.key).where(MetricSummary.run_id == run_id).order_by(MetricSummary.key)))


@retrying
def truncate_metrics(store: Store, run_id: int, after_step: int) -> None:
    """Forget points after `after_step` (a resume replays those steps) and rebuild the summaries."""
    with store.session() as s, s.begin():
        s.execute(delete(Metric).where(Metric.run_id == run_id, Metric.step > after_step))
        s.execute(delete(MetricSummary).where(MetricSummary.run_id == run_id))
        stats = s.execute(
            select(Metric.key, func.min(Metric.value), func.max(Metric.value), func.count(), func.max(Metric.step))
            .where(Metric.run_id == run_id).group_by(Metric.key)).all()
        for key, lo, hi, count, last_step in stats:
            last = s.scalar(select(Metric.value).where(
                Metric.run_id == run_id, Metric.key == key, Metric.step == last_step))
            s.add(MetricSummary(run_id=run_id, key=key, last=last, last_step=last_step, min=lo, max=hi, count=count))

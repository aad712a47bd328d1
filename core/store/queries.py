"""Reads and writes on the store. Screens and commands call these; none of them writes SQL."""

from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.config import check_tag
from core.errors import BadInput, NotFound
from core.store.db import Store, retrying
from core.store.models import (ENDED_STATUSES, Artifact, BlindTest, Classifier, EvalJob, Evaluation, Metric,
                               MetricSummary, Note, Run, StatusEvent, Sweep, Tag)


def now() -> float:
    return time.time()


def database_clock(store: Store):
    """An SQL expression of the database server's time in seconds since the epoch: heartbeats and
    the staleness of other hosts' runs are judged on this one clock, whatever each host's clock says
    (optuna's RDB storage does the same)."""
    if store.engine.dialect.name == "postgresql":
        return func.extract("epoch", func.clock_timestamp())
    return (func.julianday("now") - 2440587.5) * 86400.0  # SQLite: days since noon 4713 BC -> Unix seconds


def database_time(store: Store) -> float:
    with store.session() as s:
        return float(s.scalar(select(database_clock(store))))


@retrying
def create_run(
    store: Store, config: dict, status: str = "queued", name: str = "", total_steps: int = 0,
    sweep_id: int | None = None, parent_id: int | None = None, tags: Sequence[str] = (),
    executor: str = "local", **fields,
) -> Run:
    """A new run row (and its first status event and tags); `fields` sets further columns."""
    with store.session() as s, s.begin():
        return _add_run(s, config, status=status, name=name, total_steps=total_steps, sweep_id=sweep_id,
                        parent_id=parent_id, tags=tags, executor=executor, **fields)


def _add_run(s, config: dict, status: str, name: str, total_steps: int, sweep_id: int | None,
             parent_id: int | None = None, tags: Sequence[str] = (), executor: str = "local", **fields) -> Run:
    """Add a run row, its first status event and its tags to the open transaction of session `s`."""
    run = Run(name=name, status=status, config=config, created_at=now(), total_steps=total_steps,
              sweep_id=sweep_id, parent_id=parent_id, executor=executor, **fields)
    s.add(run)
    s.flush()
    if not run.name:
        run.name = f"run-{run.id}"
    s.add(StatusEvent(run_id=run.id, status=status, reason="created", at=run.created_at))
    for tag in dict.fromkeys(tags):
        s.add(Tag(run_id=run.id, tag=tag))
    return run


@retrying
def update_run(store: Store, run_id: int, expect: Sequence[str] | None = None, match: dict | None = None,
               **fields) -> bool:
    """Set columns of a run; with `expect`/`match` (as in set_status) only while those hold.
    Returns whether the row changed."""
    with store.session() as s, s.begin():
        return s.execute(_guarded(run_id, expect, match).values(**fields)).rowcount > 0


def _guarded(run_id: int, expect: Sequence[str] | None, match: dict | None):
    stmt = update(Run).where(Run.id == run_id)
    if expect is not None:
        stmt = stmt.where(Run.status.in_(tuple(expect)))
    for column, value in (match or {}).items():
        attr = getattr(Run, column)
        stmt = stmt.where(attr.is_(None) if value is None else attr == value)
    return stmt


@retrying
def set_status(store: Store, run_id: int, status: str, reason: str | None = None,
               expect: Sequence[str] | None = None, match: dict | None = None, **fields) -> bool:
    """Move a run to `status` (recording an event). With `expect`, only from those statuses, and
    with `match`, only while those columns still hold those values (None matches NULL); returns
    whether the row changed (a compare-and-set, so two writers cannot both win)."""
    at = now()
    values = dict(fields, status=status)
    if status in ENDED_STATUSES:
        values.setdefault("ended_at", at)
        values.setdefault("exit_reason", reason)
    with store.session() as s, s.begin():
        changed = s.execute(_guarded(run_id, expect, match).values(**values)).rowcount > 0
        if changed:
            s.add(StatusEvent(run_id=run_id, status=status, reason=reason, at=at))
    return changed


ID_MAX = 2**63 - 1  # ids are 64-bit integer keys


def parse_id(value: int | str, what: str = "run") -> int:
    """The one parser of run and sweep ids as users write them: plain ASCII digits only. int() alone
    would also take '0_1', ' 3', '+3' and non-ASCII digits ('٣' is 3) and so act on a record nobody
    named. BadInput names the value; NotFound an id out of the key's range."""
    if isinstance(value, int) and not isinstance(value, bool):
        key = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        key = int(value)
    else:
        raise BadInput(f"{what} id must be a number (ASCII digits), got {value!r}")
    if not 0 < key <= ID_MAX:
        raise NotFound(f"no {what} with id {key} ({what} ids are positive 64-bit integers)")
    return key


def get_run(store: Store, run_id: int | str) -> Run:
    """The run with this id; BadInput when there is none."""
    key = parse_id(run_id, "run")
    with store.session() as s:
        run = s.get(Run, key)
    if run is None:
        raise NotFound(f"no run with id {key}")
    return run


def list_runs(store: Store, status: str | None = None, sweep_id: int | None = None) -> list[Run]:
    with store.session() as s:
        stmt = select(Run).order_by(Run.id)
        if status:
            stmt = stmt.where(Run.status == status)
        if sweep_id is not None:
            stmt = stmt.where(Run.sweep_id == sweep_id)
        return list(s.scalars(stmt))


def run_tags(store: Store, run_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    with store.session() as s:
        stmt = select(Tag.run_id, Tag.tag).order_by(Tag.run_id, Tag.tag)
        if run_ids is not None:
            stmt = stmt.where(Tag.run_id.in_(list(run_ids)))
        out: dict[int, list[str]] = {}
        for run_id, tag in s.execute(stmt):
            out.setdefault(run_id, []).append(tag)
        return out


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
def add_artifact(store: Store, run_id: int, kind: str, path: str, step: int | None = None) -> None:
    with store.session() as s, s.begin():
        s.add(Artifact(run_id=run_id, kind=kind, path=path, step=step, created_at=now()))


def artifacts(store: Store, run_id: int, kind: str | None = None) -> list[Artifact]:
    with store.session() as s:
        stmt = select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)
        if kind:
            stmt = stmt.where(Artifact.kind == kind)
        return list(s.scalars(stmt))


def status_events(store: Store, run_id: int) -> list[StatusEvent]:
    with store.session() as s:
        return list(s.scalars(select(StatusEvent).where(StatusEvent.run_id == run_id).order_by(StatusEvent.id)))


def notes_by_run(store: Store, run_ids: Sequence[int] | None = None) -> dict[int, list[str]]:
    """{run id: its notes' texts, oldest first} in one query."""
    with store.session() as s:
        stmt = select(Note.run_id, Note.text).order_by(Note.id)
        if run_ids is not None:
            stmt = stmt.where(Note.run_id.in_(list(run_ids)))
        out: dict[int, list[str]] = {}
        for run_id, text in s.execute(stmt):
            out.setdefault(run_id, []).append(text)
        return out


def notes(store: Store, run_id: int) -> list[Note]:
    with store.session() as s:
        return list(s.scalars(select(Note).where(Note.run_id == run_id).order_by(Note.id)))


@retrying
def add_note(store: Store, run_id: int, text: str) -> None:
    if not text.strip():
        raise BadInput("note: empty text")
    with store.session() as s, s.begin():
        s.add(Note(run_id=run_id, text=text, created_at=now()))


@retrying
def add_tags(store: Store, run_id: int, tags: Sequence[str], remove: bool = False) -> None:
    """Add (or remove) tags; an empty or blank tag is refused before anything changes."""
    tags = [check_tag(t, "tag") for t in tags]
    with store.session() as s, s.begin():
        have = set(s.scalars(select(Tag.tag).where(Tag.run_id == run_id)))
        for tag in tags:
            if remove and tag in have:
                s.execute(delete(Tag).where(Tag.run_id == run_id, Tag.tag == tag))
            elif not remove and tag not in have:
                s.add(Tag(run_id=run_id, tag=tag))


@retrying
def delete_run(store: Store, run_id: int) -> None:
    with store.session() as s, s.begin():
        s.execute(update(Run).where(Run.parent_id == run_id).values(parent_id=None))
        for table in (Metric, MetricSummary, Artifact, Tag, Note, StatusEvent, BlindTest, Evaluation, EvalJob):
            s.execute(delete(table).where(table.run_id == run_id))
        s.execute(delete(Run).where(Run.id == run_id))


@retrying
def create_sweep(store: Store, name: str, spec: dict) -> Sweep:
    with store.session() as s, s.begin():
        sweep = Sweep(name=name, spec=spec, created_at=now())
        s.add(sweep)
    return sweep


@retrying
def create_sweep_runs(store: Store, name: str, spec: dict, runs: Sequence[dict],
                      prepare: Callable[[int, Run], str], discard: Callable[[Run], None]) -> tuple[Sweep, list[Run]]:
    """A sweep and its queued runs (`runs`: create_run's arguments, one dict per run) in ONE
    transaction: all are stored or none. `prepare(i, run)` makes the i-th run's directory once its
    id is known and returns its path; when anything fails (an interrupt included) the transaction is
    rolled back and `discard(run)` is called for every run already prepared."""
    prepared: list[Run] = []
    try:
        with store.session() as s, s.begin():
            sweep = Sweep(name=name, spec=spec, created_at=now())
            s.add(sweep)
            s.flush()
            for i, fields in enumerate(runs):
                run = _add_run(s, sweep_id=sweep.id, **fields)
                run.run_dir = prepare(i, run)
                prepared.append(run)
        return sweep, prepared
    except BaseException:
        for run in prepared:
            discard(run)
        raise


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


def global_batch(config: dict) -> int:
    """Images per optimizer step over all of a run's processes."""
    return config.get("batch_size", 0) * config.get("nproc", 1) * config.get("nnodes", 1)


def run_record(run: Run, summary: dict | None = None, tags: list[str] | None = None) -> dict:
    """A run as plain data (what `runs list --json` prints and the TUI shows)."""
    summary = summary or {}
    loss = summary.get("train/loss", {})
    smooth = summary.get("train/loss_smooth", {})
    best = summary.get("val/loss", smooth)
    return {
        "id": run.id, "name": run.name, "status": run.status, "step": run.step, "total_steps": run.total_steps,
        "loss": loss.get("last"), "smooth_loss": smooth.get("last"), "best": best.get("min"),
        "val_loss": summary.get("val/loss", {}).get("last"),
        "img_per_s": summary.get("img_per_s", {}).get("last"),
        "created_at": run.created_at, "started_at": run.started_at, "ended_at": run.ended_at,
        "heartbeat_at": run.heartbeat_at, "host": run.host, "pid": run.pid, "exit_reason": run.exit_reason,
        "sweep_id": run.sweep_id, "parent_id": run.parent_id, "executor": run.executor,
        "external_id": run.external_id, "global_batch": global_batch(run.config), "run_dir": run.run_dir,
        "checkpoint_path": run.checkpoint_path, "tags": tags or [], "config": run.config,
    }


def run_records(store: Store, status: str | None = None, sweep_id: int | None = None) -> list[dict]:
    """Every run (optionally filtered) with its summary and tags, in three queries."""
    runs = list_runs(store, status=status, sweep_id=sweep_id)
    sums, tags = summaries(store), run_tags(store)
    return [run_record(r, sums.get(r.id), tags.get(r.id)) for r in runs]


def list_sweeps(store: Store) -> list[Sweep]:
    with store.session() as s:
        return list(s.scalars(select(Sweep).order_by(Sweep.id)))


# ---- blind tests ------------------------------------------------------------------------------------


@retrying
def add_blind_test(store: Store, run_id: int, mode: str, n: int, correct: int, p_value: float,
                   answers: dict | list) -> BlindTest:
    """Store the outcome of one blind test of a run."""
    with store.session() as s, s.begin():
        row = BlindTest(run_id=run_id, mode=mode, n=n, correct=correct, p_value=p_value, answers=answers,
                        created_at=now())
        s.add(row)
    return row


def blind_tests(store: Store, run_id: int | None = None) -> list[BlindTest]:
    """Blind-test results, newest first (of one run, or of all runs)."""
    with store.session() as s:
        stmt = select(BlindTest).order_by(BlindTest.id.desc())
        if run_id is not None:
            stmt = stmt.where(BlindTest.run_id == run_id)
        return list(s.scalars(stmt))


# ---- evaluations and classifiers ---------------------------------------------------------------------


@retrying
def add_evaluation(store: Store, run_id: int, metric: str, value: float, ci_low: float | None, ci_high: float | None,
                   n: int, split: str | None, seed: int | None, details: dict, checkpoint_step: int | None = None,
                   sampler: str | None = None, steps: int | None = None, guidance: float | None = None,
                   classifier_id: int | None = None) -> Evaluation:
    """Store one evaluated number of a run with everything that decides it."""
    with store.session() as s, s.begin():
        row = Evaluation(run_id=run_id, metric=metric, value=value, ci_low=ci_low, ci_high=ci_high, n=n, split=split,
                         seed=seed, details=details, created_at=now(), checkpoint_step=checkpoint_step,
                         sampler=sampler, steps=steps, guidance=guidance, classifier_id=classifier_id)
        s.add(row)
    return row


def evaluations(store: Store, run_ids: Iterable[int] | None = None, metric: str | None = None) -> list[Evaluation]:
    """Evaluations, oldest first (of some runs, of one metric)."""
    with store.session() as s:
        stmt = select(Evaluation).order_by(Evaluation.id)
        if run_ids is not None:
            stmt = stmt.where(Evaluation.run_id.in_(list(run_ids)))
        if metric is not None:
            stmt = stmt.where(Evaluation.metric == metric)
        return list(s.scalars(stmt))


def latest_evaluations(store: Store, run_ids: Iterable[int] | None = None) -> dict[int, dict[str, Evaluation]]:
    """{run id: {metric: its newest evaluation}}."""
    out: dict[int, dict[str, Evaluation]] = {}
    for e in evaluations(store, run_ids):
        out.setdefault(e.run_id, {})[e.metric] = e
    return out


def evaluation_record(e: Evaluation, with_details: bool = False) -> dict:
    """An evaluation as plain data (what `runs show --json` and `eval --json` print)."""
    record = {"id": e.id, "run_id": e.run_id, "metric": e.metric, "value": e.value, "ci_low": e.ci_low,
              "ci_high": e.ci_high, "n": e.n, "split": e.split, "seed": e.seed, "checkpoint_step": e.checkpoint_step,
              "sampler": e.sampler, "steps": e.steps, "guidance": e.guidance, "classifier_id": e.classifier_id,
              "created_at": e.created_at}
    record["details"] = e.details if with_details else {k: v for k, v in e.details.items()
                                                        if not isinstance(v, list) or len(v) <= 16}
    return record


@retrying
def add_classifier(store: Store, **fields) -> Classifier:
    with store.session() as s, s.begin():
        row = Classifier(created_at=now(), **fields)
        s.add(row)
    return row


@retrying
def update_classifier(store: Store, classifier_id: int, **fields) -> None:
    with store.session() as s, s.begin():
        s.execute(update(Classifier).where(Classifier.id == classifier_id).values(**fields))


@retrying
def delete_classifier(store: Store, classifier_id: int) -> None:
    with store.session() as s, s.begin():
        s.execute(delete(Classifier).where(Classifier.id == classifier_id))


def classifiers(store: Store) -> list[Classifier]:
    with store.session() as s:
        return list(s.scalars(select(Classifier).order_by(Classifier.id)))


def get_classifier(store: Store, classifier_id: int) -> Classifier:
    with store.session() as s:
        row = s.get(Classifier, int(classifier_id))
    if row is None:
        raise BadInput(f"--classifier: no classifier with id {classifier_id} (ddpm-tui classifier list)")
    return row


# ---- eval jobs (the worker's queue of evaluations) -------------------------------------------------------


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
def claim_eval_job(store: Store, host: str, pid: int) -> EvalJob | None:
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


def get_eval_job(store: Store, job_id: int) -> EvalJob:
    with store.session() as s:
        job = s.get(EvalJob, int(job_id))
    if job is None:
        raise BadInput(f"no evaluation job with id {job_id}")
    return job


def eval_jobs(store: Store, run_ids: Iterable[int] | None = None, status: str | None = None) -> list[EvalJob]:
    with store.session() as s:
        stmt = select(EvalJob).order_by(EvalJob.id)
        if run_ids is not None:
            stmt = stmt.where(EvalJob.run_id.in_(list(run_ids)))
        if status is not None:
            stmt = stmt.where(EvalJob.status == status)
        return list(s.scalars(stmt))


def get_sweep(store: Store, sweep_id: int | str) -> Sweep:
    """The sweep with this id; BadInput when there is none."""
    key = parse_id(sweep_id, "sweep")
    with store.session() as s:
        sweep = s.get(Sweep, key)
    if sweep is None:
        raise BadInput(f"no sweep with id {key}")
    return sweep

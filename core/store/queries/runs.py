"""The run aggregate: a run's row, its status history, tags, notes and artifacts."""

from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.config import check_tag
from core.errors import BadInput, NotFound
from core.store import entities
from core.store.db import Store, retrying
from core.store.models import (ENDED_STATUSES, Artifact, BlindTest, EvalJob, Evaluation, Metric, MetricSummary, Note,
                               Run, StatusEvent, Tag)
from core.store.queries.clock import now
from core.store.queries.metrics import summaries
from core.store.queries.rows import entities_from, entity_by_id, own, select_entities, to_entity


@retrying
def create_run(
    store: Store, config: dict, status: str = "queued", name: str = "", total_steps: int = 0,
    sweep_id: int | None = None, parent_id: int | None = None, tags: Sequence[str] = (),
    executor: str = "local", **fields,
) -> entities.Run:
    """A new run row (and its first status event and tags); `fields` sets further columns."""
    with store.session() as s, s.begin():
        run = add_run(s, config, status=status, name=name, total_steps=total_steps, sweep_id=sweep_id,
                      parent_id=parent_id, tags=tags, executor=executor, **fields)
        return to_entity(run, entities.Run)


def add_run(s: Session, config: dict, status: str, name: str, total_steps: int, sweep_id: int | None,
            parent_id: int | None = None, tags: Sequence[str] = (), executor: str = "local", **fields) -> Run:
    """Add a run row, its first status event and its tags to the open transaction of session `s`;
    returns the (flushed) row, which the caller turns into an entity before the session ends."""
    run = Run(name=name, status=status, config=own(config), created_at=now(), total_steps=total_steps,
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


def get_run(store: Store, run_id: int | str) -> entities.Run:
    """The run with this id; NotFound when there is none."""
    key = parse_id(run_id, "run")
    return entity_by_id(store, Run, entities.Run, key, NotFound(f"no run with id {key}"))


def list_runs(store: Store, status: str | None = None, sweep_id: int | None = None) -> list[entities.Run]:
    with store.session() as s:
        stmt = select_entities(Run, entities.Run).order_by(Run.id)
        if status:
            stmt = stmt.where(Run.status == status)
        if sweep_id is not None:
            stmt = stmt.where(Run.sweep_id == sweep_id)
        return entities_from(s.execute(stmt), entities.Run)


@retrying
def delete_run(store: Store, run_id: int) -> None:
    with store.session() as s, s.begin():
        s.execute(update(Run).where(Run.parent_id == run_id).values(parent_id=None))
        for table in (Metric, MetricSummary, Artifact, Tag, Note, StatusEvent, BlindTest, Evaluation, EvalJob):
            s.execute(delete(table).where(table.run_id == run_id))
        s.execute(delete(Run).where(Run.id == run_id))


def global_batch(config: dict) -> int:
    """Images per optimizer step over all of a run's processes."""
    return config.get("batch_size", 0) * config.get("nproc", 1) * config.get("nnodes", 1)


def run_record(run: entities.Run, summary: dict | None = None, tags: list[str] | None = None) -> dict:
    """A run as plain data (what `runs list --json` prints and the TUI shows); its config is a plain
    dict again, for json.dumps."""
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
        "checkpoint_path": run.checkpoint_path, "tags": tags or [], "config": dict(run.config),
    }


def run_records(store: Store, status: str | None = None, sweep_id: int | None = None) -> list[dict]:
    """Every run (optionally filtered) with its summary and tags, in three queries."""
    runs = list_runs(store, status=status, sweep_id=sweep_id)
    sums, tags = summaries(store), run_tags(store)
    return [run_record(r, sums.get(r.id), tags.get(r.id)) for r in runs]


# ---- what is recorded about a run beside its row ---------------------------------------------------------


def run_tags(store: Store, run_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    with store.session() as s:
        stmt = select(Tag.run_id, Tag.tag).order_by(Tag.run_id, Tag.tag)
        if run_ids is not None:
            stmt = stmt.where(Tag.run_id.in_(list(run_ids)))
        out: dict[int, list[str]] = {}
        for run_id, tag in s.execute(stmt):
            out.setdefault(run_id, []).append(tag)
        return out


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


def status_events(store: Store, run_id: int) -> list[entities.StatusEvent]:
    with store.session() as s:
        stmt = select_entities(StatusEvent, entities.StatusEvent).where(StatusEvent.run_id == run_id)
        return entities_from(s.execute(stmt.order_by(StatusEvent.id)), entities.StatusEvent)


@retrying
def add_artifact(store: Store, run_id: int, kind: str, path: str, step: int | None = None) -> None:
    with store.session() as s, s.begin():
        s.add(Artifact(run_id=run_id, kind=kind, path=path, step=step, created_at=now()))


def artifacts(store: Store, run_id: int, kind: str | None = None) -> list[entities.Artifact]:
    with store.session() as s:
        stmt = select_entities(Artifact, entities.Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)
        if kind:
            stmt = stmt.where(Artifact.kind == kind)
        return entities_from(s.execute(stmt), entities.Artifact)


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


def notes(store: Store, run_id: int) -> list[entities.Note]:
    with store.session() as s:
        stmt = select_entities(Note, entities.Note).where(Note.run_id == run_id).order_by(Note.id)
        return entities_from(s.execute(stmt), entities.Note)


@retrying
def add_note(store: Store, run_id: int, text: str) -> None:
    if not text.strip():
        raise BadInput("note: empty text")
    with store.session() as s, s.begin():
        s.add(Note(run_id=run_id, text=text, created_at=now()))

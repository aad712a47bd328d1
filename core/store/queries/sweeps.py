"""Sweeps: a grid of runs queued together, all or nothing."""

from __future__ import annotations

from typing import Callable, Sequence

from core.errors import BadInput
from core.store import entities
from core.store.db import Store, retrying
from core.store.models import Sweep
from core.store.queries.clock import now
from core.store.queries.rows import entities_from, entity_by_id, own, select_entities, to_entity
from core.store.queries.runs import add_run, parse_id


@retrying
def create_sweep(store: Store, name: str, spec: dict) -> entities.Sweep:
    with store.session() as s, s.begin():
        sweep = Sweep(name=name, spec=own(spec), created_at=now())
        s.add(sweep)
        s.flush()
        return to_entity(sweep, entities.Sweep)


@retrying
def create_sweep_runs(store: Store, name: str, spec: dict, runs: Sequence[dict],
                      prepare: Callable[[int, entities.Run], str],
                      discard: Callable[[entities.Run], None]) -> tuple[entities.Sweep, list[entities.Run]]:
    """A sweep and its queued runs (`runs`: create_run's arguments, one dict per run) in ONE
    transaction: all are stored or none. `prepare(i, run)` makes the i-th run's directory once its
    id is known and returns its path; when anything fails (an interrupt included) the transaction is
    rolled back and `discard(run)` is called for every run already prepared (with its run_dir)."""
    prepared: list[entities.Run] = []
    try:
        with store.session() as s, s.begin():
            sweep = Sweep(name=name, spec=own(spec), created_at=now())
            s.add(sweep)
            s.flush()
            for i, fields in enumerate(runs):
                run = add_run(s, sweep_id=sweep.id, **fields)
                run.run_dir = prepare(i, to_entity(run, entities.Run))
                prepared.append(to_entity(run, entities.Run))
            stored = to_entity(sweep, entities.Sweep)
        return stored, prepared
    except BaseException:
        for run in prepared:
            discard(run)
        raise


def list_sweeps(store: Store) -> list[entities.Sweep]:
    with store.session() as s:
        return entities_from(s.execute(select_entities(Sweep, entities.Sweep).order_by(Sweep.id)), entities.Sweep)


def get_sweep(store: Store, sweep_id: int | str) -> entities.Sweep:
    """The sweep with this id; BadInput when there is none."""
    key = parse_id(sweep_id, "sweep")
    return entity_by_id(store, Sweep, entities.Sweep, key, BadInput(f"no sweep with id {key}"))

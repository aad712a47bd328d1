"""Evaluated numbers of runs (NLL, KID, FID, ...) with everything that decides each."""

from __future__ import annotations

from typing import Iterable

from core.store import entities
from core.store.db import Store, retrying
from core.store.models import Evaluation
from core.store.queries.clock import now
from core.store.queries.rows import entities_from, own, select_entities, to_entity


@retrying
def add_evaluation(store: Store, run_id: int, metric: str, value: float, ci_low: float | None, ci_high: float | None,
                   n: int, split: str | None, seed: int | None, details: dict, checkpoint_step: int | None = None,
                   sampler: str | None = None, steps: int | None = None, guidance: float | None = None,
                   classifier_id: int | None = None) -> entities.Evaluation:
    """Store one evaluated number of a run with everything that decides it."""
    with store.session() as s, s.begin():
        row = Evaluation(run_id=run_id, metric=metric, value=value, ci_low=ci_low, ci_high=ci_high, n=n, split=split,
                         seed=seed, details=own(details), created_at=now(), checkpoint_step=checkpoint_step,
                         sampler=sampler, steps=steps, guidance=guidance, classifier_id=classifier_id)
        s.add(row)
        s.flush()
        return to_entity(row, entities.Evaluation)


def evaluations(store: Store, run_ids: Iterable[int] | None = None,
                metric: str | None = None) -> list[entities.Evaluation]:
    """Evaluations, oldest first (of some runs, of one metric)."""
    with store.session() as s:
        stmt = select_entities(Evaluation, entities.Evaluation).order_by(Evaluation.id)
        if run_ids is not None:
            stmt = stmt.where(Evaluation.run_id.in_(list(run_ids)))
        if metric is not None:
            stmt = stmt.where(Evaluation.metric == metric)
        return entities_from(s.execute(stmt), entities.Evaluation)


def latest_evaluations(store: Store,
                       run_ids: Iterable[int] | None = None) -> dict[int, dict[str, entities.Evaluation]]:
    """{run id: {metric: its newest evaluation}}."""
    out: dict[int, dict[str, entities.Evaluation]] = {}
    for e in evaluations(store, run_ids):
        out.setdefault(e.run_id, {})[e.metric] = e
    return out


def evaluation_record(e: entities.Evaluation, with_details: bool = False) -> dict:
    """An evaluation as plain data (what `runs show --json` and `eval --json` print); its details are
    a plain dict again, for json.dumps."""
    record = {"id": e.id, "run_id": e.run_id, "metric": e.metric, "value": e.value, "ci_low": e.ci_low,
              "ci_high": e.ci_high, "n": e.n, "split": e.split, "seed": e.seed, "checkpoint_step": e.checkpoint_step,
              "sampler": e.sampler, "steps": e.steps, "guidance": e.guidance, "classifier_id": e.classifier_id,
              "created_at": e.created_at}
    record["details"] = dict(e.details) if with_details else {k: v for k, v in e.details.items()
                                                              if not isinstance(v, list) or len(v) <= 16}
    return record

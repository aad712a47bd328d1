"""Blind tests of runs (ddpm_tui/tui/screens/blind.py, core/blind.py): one person's verdicts on a run's patches."""

from __future__ import annotations

from core.store import entities
from core.store.db import Store, retrying
from core.store.models import BlindTest
from core.store.queries.clock import now
from core.store.queries.rows import entities_from, own, select_entities, to_entity


@retrying
def add_blind_test(store: Store, run_id: int, mode: str, n: int, correct: int, p_value: float,
                   answers: dict | list) -> entities.BlindTest:
    """Store the outcome of one blind test of a run."""
    with store.session() as s, s.begin():
        row = BlindTest(run_id=run_id, mode=mode, n=n, correct=correct, p_value=p_value, answers=own(answers),
                        created_at=now())
        s.add(row)
        s.flush()
        return to_entity(row, entities.BlindTest)


def blind_tests(store: Store, run_id: int | None = None) -> list[entities.BlindTest]:
    """Blind-test results, newest first (of one run, or of all runs)."""
    with store.session() as s:
        stmt = select_entities(BlindTest, entities.BlindTest).order_by(BlindTest.id.desc())
        if run_id is not None:
            stmt = stmt.where(BlindTest.run_id == run_id)
        return entities_from(s.execute(stmt), entities.BlindTest)

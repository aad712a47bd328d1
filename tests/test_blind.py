"""The blind test's logic (core/blind.py) and its table in the store."""

import math
from fractions import Fraction

import pytest
from sqlalchemy import text

from core.blind import (CLASS_MODE, PAIR_MODE, BlindSession, binomial_tail, class_trials, p_value, pair_sides,
                        verdict)
from core.store import Store, queries


@pytest.mark.parametrize("correct, n, expected", [
    (10, 10, 1 / 1024),
    (5, 10, 0.623046875),  # 638/1024
    (0, 10, 1.0),
    (7, 10, 0.171875),  # (120 + 45 + 10 + 1) / 1024
    (8, 10, 0.0546875),  # 56/1024: 8/10 is not significant at 0.05
    (9, 10, 11 / 1024),
    (1, 1, 0.5),
    (0, 0, 1.0),
    (15, 20, 0.020694732666015625),  # 21700/2**20
])
def test_p_value_known_values(correct, n, expected):
    assert p_value(correct, n) == expected


def test_p_value_matches_brute_force_and_is_monotone():
    for n in range(0, 25):
        previous = 2.0
        for k in range(n + 1):
            brute = sum(math.comb(n, j) for j in range(k, n + 1)) / 2**n
            assert p_value(k, n) == pytest.approx(brute, rel=1e-15)
            assert p_value(k, n) < previous
            previous = p_value(k, n)


def test_p_value_is_exact_for_large_n_and_other_p():
    assert p_value(200, 200) == 2.0**-200  # exact rational sum, rounded once
    assert 0 < p_value(150, 200) < 1e-12
    assert binomial_tail(2, 2, Fraction(1, 4)) == 1 / 16
    assert binomial_tail(1, 2, 0.25) == pytest.approx(1 - 0.75**2)


@pytest.mark.parametrize("correct, n", [(-1, 10), (11, 10), (0, -1)])
def test_p_value_rejects_impossible_scores(correct, n):
    with pytest.raises(ValueError):
        p_value(correct, n)


def test_verdict_reads_the_p_value():
    assert verdict(10, 10).startswith("better than chance")
    assert verdict(8, 10).startswith("consistent with guessing")
    assert verdict(0, 0) == "no answers"


def test_trials_are_balanced_shuffled_and_seeded():
    order = class_trials(5, seed=3)
    assert sorted(order) == [(0, i) for i in range(5)] + [(1, i) for i in range(5)]
    assert order == class_trials(5, seed=3)
    assert order != sorted(order)  # shuffled (for this seed)
    assert any(class_trials(5, seed=s) != order for s in range(4, 10))
    sides = pair_sides(9, seed=1)
    assert sides == pair_sides(9, seed=1) and sorted(set(sides)) == ["a", "b"]
    assert abs(sides.count("a") - sides.count("b")) <= 1
    with pytest.raises(ValueError):
        class_trials(0, seed=0)


def test_session_scores_and_records():
    s = BlindSession(CLASS_MODE, ["cancerous", "non_cancerous", "cancerous", "cancerous"])
    assert s.answer("cancerous") is True
    assert s.answer("cancerous") is False
    with pytest.raises(ValueError):
        s.answer("a")  # not an answer of this mode
    s.answer("cancerous")
    assert not s.done and s.position == 3
    s.answer("non_cancerous")
    assert s.done and s.correct == 2 and s.p_value == p_value(2, 4)
    with pytest.raises(ValueError):
        s.answer("cancerous")
    record = s.record(seed=5)
    assert record["seed"] == 5 and len(record["trials"]) == 4
    assert record["trials"][1] == {"truth": "non_cancerous", "answer": "cancerous", "correct": False}
    pair = BlindSession(PAIR_MODE, ["a", "b"])
    pair.answer("a")
    pair.answer("a")
    assert pair.correct == 1 and pair.record()["trials"][1] == {"generated": "b", "answer": "a", "correct": False}
    with pytest.raises(ValueError):
        BlindSession("telepathy", [])


def test_blind_tests_table_queries_and_delete(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    with store.engine.connect() as conn:
        tables = set(conn.execute(text("select name from sqlite_master where type='table'")).scalars())
    assert "blind_tests" in tables
    a, b = queries.create_run(store, {}).id, queries.create_run(store, {}).id
    queries.add_blind_test(store, a, CLASS_MODE, 10, 10, 1 / 1024, {"trials": []})
    queries.add_blind_test(store, b, PAIR_MODE, 4, 2, 0.6875, {"trials": [{"generated": "a", "answer": "a"}]})
    queries.add_blind_test(store, a, PAIR_MODE, 2, 0, 1.0, {})
    assert [(t.run_id, t.mode, t.correct) for t in queries.blind_tests(store)] == [
        (a, PAIR_MODE, 0), (b, PAIR_MODE, 2), (a, CLASS_MODE, 10)]  # newest first
    assert [t.n for t in queries.blind_tests(store, run_id=b)] == [4]
    assert queries.blind_tests(store, run_id=b)[0].answers["trials"][0]["answer"] == "a"
    queries.delete_run(store, a)
    assert [t.run_id for t in queries.blind_tests(store)] == [b]


def test_upgrade_from_0001_keeps_runs_and_adds_blind_tests(tmp_path):
    from alembic import command
    from sqlalchemy import create_engine

    from core.store.db import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(text("insert into runs (name, status, config, run_dir, created_at, executor, step, total_steps)"
                          " values ('old', 'finished', '{}', '', 0, 'local', 0, 0)"))
    engine.dispose()
    store = Store(url)
    assert [r.name for r in queries.list_runs(store)] == ["old"]
    queries.add_blind_test(store, 1, CLASS_MODE, 2, 1, 0.75, {})
    assert len(queries.blind_tests(store, 1)) == 1

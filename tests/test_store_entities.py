"""The store hands out frozen entities (core.store.entities), never ORM rows, and only core/store
knows its tables (issue 19)."""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest

from core.store import Store, entities, queries

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    opened = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        yield opened
    finally:
        opened.close()


def rows_of_every_query(store: Store, tmp_path: Path) -> dict[str, list]:
    """{query name: what it returned, as a list of rows} for every query that returns rows."""
    run = queries.create_run(store, {"lr": 0.1, "tag": ["a"]}, status="finished", total_steps=4, tags=["x"])
    queries.add_artifact(store, run.id, "grid", "grid.png", step=4)
    queries.add_note(store, run.id, "first")
    sweep = queries.create_sweep(store, "grid", {"axes": ["lr"], "seeds": 1})
    sweep_b, sweep_runs = queries.create_sweep_runs(
        store, "grid-b", {"axes": []}, [{"config": {"lr": 0.2}, "status": "queued", "name": "", "total_steps": 2}],
        prepare=lambda i, r: str(tmp_path / str(r.id)), discard=lambda r: None)
    evaluation = queries.add_evaluation(store, run.id, "nll", 3.5, 3.4, 3.6, 8, "test", 0, {"per_image": [1.0, 2.0]})
    classifier = queries.add_classifier(store, data="demo", image_size=32, preprocess="raw", steps=10,
                                        accuracy=0.9, auc=None, n_eval=8, split="valid", path="c.pt")
    blind = queries.add_blind_test(store, run.id, "class", 4, 3, 0.3, {"trials": [{"answer": "a"}]})
    assert queries.queue_eval_job(store, run.id, "nll", 8)
    claimed = queries.claim_eval_job(store, "host", 1)
    return {
        "create_run": [run], "get_run": [queries.get_run(store, run.id)], "list_runs": queries.list_runs(store),
        "status_events": queries.status_events(store, run.id), "artifacts": queries.artifacts(store, run.id),
        "notes": queries.notes(store, run.id),
        "create_sweep": [sweep], "create_sweep_runs": [sweep_b, *sweep_runs], "list_sweeps": queries.list_sweeps(store),
        "get_sweep": [queries.get_sweep(store, sweep.id)],
        "add_evaluation": [evaluation], "evaluations": queries.evaluations(store),
        "latest_evaluations": [e for by_metric in queries.latest_evaluations(store).values()
                               for e in by_metric.values()],
        "add_classifier": [classifier], "classifiers": queries.classifiers(store),
        "get_classifier": [queries.get_classifier(store, classifier.id)],
        "add_blind_test": [blind], "blind_tests": queries.blind_tests(store),
        "claim_eval_job": [claimed], "get_eval_job": [queries.get_eval_job(store, claimed.id)],
        "eval_jobs": queries.eval_jobs(store),
    }


def row_returning_queries() -> set[str]:
    """The store's public functions whose return annotation names an entity."""
    names = set()
    for name in queries.__all__:
        function = getattr(queries, name)
        if inspect.isfunction(function) and re.search(r"\bentities\.", str(inspect.signature(function).return_annotation)):
            names.add(name)
    return names


def test_every_query_that_returns_rows_returns_frozen_entities(store, tmp_path):
    returned = rows_of_every_query(store, tmp_path)
    assert set(returned) == row_returning_queries(), "a row-returning query is missing from this test"
    for name, rows in returned.items():
        assert rows, name
        for row in rows:
            assert isinstance(row, entities.Entity) and type(row).__module__ == "core.store.entities", (name, type(row))
            first_field = type(row).__slots__[0]
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(row, first_field, 0)
            with pytest.raises(dataclasses.FrozenInstanceError):
                delattr(row, first_field)
            assert not hasattr(row, "__dict__"), "an entity holds its fields only"
            assert {row: 1}[row.replace()] == 1  # usable in sets and as a key, JSON fields and all
            assert copy.copy(row) == row


def test_json_columns_are_read_only_and_shared_with_nobody(store):
    config = {"lr": 0.1, "tag": ["a"]}
    run = queries.create_run(store, config)
    config["lr"] = 99.0
    config["tag"].append("b")
    assert run.config == {"lr": 0.1, "tag": ["a"]}
    with pytest.raises(TypeError):
        run.config["lr"] = 1.0
    assert queries.get_run(store, run.id).config == {"lr": 0.1, "tag": ["a"]}
    details = {"per_image": [1.0]}
    evaluation = queries.add_evaluation(store, run.id, "nll", 1.0, None, None, 1, "test", 0, details)
    details["per_image"].append(2.0)
    assert evaluation.details == {"per_image": [1.0]}
    with pytest.raises(TypeError):
        evaluation.details["estimate"] = True


def test_a_sweeps_prepare_and_discard_see_entities_and_a_failure_stores_nothing(store, tmp_path):
    seen = []

    def prepare(i, run):
        seen.append(run)
        if i == 1:
            raise OSError("disk full")
        return str(tmp_path / str(run.id))

    discarded = []
    rows = [{"config": {"seed": seed}, "status": "queued", "name": "", "total_steps": 1} for seed in (0, 1)]
    with pytest.raises(OSError):
        queries.create_sweep_runs(store, "s", {}, rows, prepare=prepare, discard=discarded.append)
    assert all(isinstance(r, entities.Run) for r in seen)
    assert [r.run_dir for r in discarded] == [str(tmp_path / str(seen[0].id))]
    assert queries.list_runs(store) == [] and queries.list_sweeps(store) == []


def test_records_are_plain_json(store):
    run = queries.create_run(store, {"lr": 0.1, "batch_size": 4})
    evaluation = queries.add_evaluation(store, run.id, "nll", 1.0, None, None, 1, "test", 0, {"per_image": [1.0]})
    for record in (queries.run_records(store)[0], queries.evaluation_record(evaluation, with_details=True)):
        json.dumps(record)  # no default=: a mapping proxy left in would raise TypeError here
    assert type(queries.run_records(store)[0]["config"]) is dict


def imports_of(path: Path) -> set[str]:
    """The modules a Python file imports, `from a.b import c` counted as a.b and a.b.c."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_store_imports_its_tables():
    offenders = [str(path.relative_to(ROOT))
                 for folder in ("core", "ddpm_tui", "benchmarks", "tests")
                 for path in sorted((ROOT / folder).rglob("*.py"))
                 if not path.is_relative_to(ROOT / "core" / "store") and "core.store.models" in imports_of(path)]
    assert offenders == []


def test_the_table_check_sees_both_ways_of_importing_the_tables(tmp_path):
    one, other = tmp_path / "one.py", tmp_path / "other.py"
    one.write_text("from core.store.models import Run\n")
    other.write_text("from core.store import models\n")
    assert "core.store.models" in imports_of(one) and "core.store.models" in imports_of(other)


def test_an_entity_is_built_from_its_fields_in_order_and_replace_checks_their_names():
    sweep = entities.Sweep(1, "grid", {}, 2.0)
    assert (sweep.id, sweep.name, sweep.created_at) == (1, "grid", 2.0)
    assert entities.Sweep.__slots__ == ("id", "name", "spec", "created_at")
    assert sweep.replace(name="b") == entities.Sweep(1, "b", {}, 2.0) != sweep
    assert sweep != entities.Sweep(1, "grid", {}, 3.0) and sweep != (1, "grid", {}, 2.0)
    assert repr(sweep) == "Sweep(id=1, name='grid', spec={}, created_at=2.0)"
    with pytest.raises(TypeError, match=r"Sweep takes 4 values \(id, name, spec, created_at\), got 3"):
        entities.Sweep(1, "grid", {})
    with pytest.raises(TypeError, match="Sweep has no field colour"):
        sweep.replace(colour="red")

"""The store: migrations, refusal of newer or foreign databases, idempotent metrics, concurrency."""

import multiprocessing as mp
import sqlite3
import time

import pytest
from sqlalchemy import text

from core.errors import BadInput
from core.store import Store
from core.store import queries
from core.store.db import head_revision
from core.store.journal import MetricLogger, read_journal, replay_journal


def test_fresh_database_is_migrated_to_head_with_wal(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == head_revision()
        assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
        assert conn.execute(text("pragma foreign_keys")).scalar() == 1
        tables = set(conn.execute(text("select name from sqlite_master where type='table'")).scalars())
    assert {"runs", "metrics", "metric_summaries", "evaluations", "artifacts", "sweeps", "tags", "notes",
            "status_events"} <= tables


def test_newer_database_is_refused_and_not_modified(tmp_path):
    path = tmp_path / "runs.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("update alembic_version set version_num = '9999_from_the_future'")
    before = path.read_bytes()
    with pytest.raises(BadInput, match="newer than this ddpm-tui"):
        Store(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_foreign_file_is_refused_untouched(tmp_path):
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not a database at all" * 10)
    with pytest.raises(BadInput, match="not an SQLite database"):
        Store(f"sqlite:///{path}")
    assert path.read_bytes() == b"this is not a database at all" * 10


def test_metrics_are_idempotent_and_summaries_exact(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    run = queries.create_run(store, {"x": 1})
    points = [("loss", s, 10.0 - s, 1.0) for s in range(100)]
    assert queries.insert_metrics(store, run.id, points[:60]) == 60
    assert queries.insert_metrics(store, run.id, points[40:]) == 40  # overlap is skipped
    assert queries.insert_metrics(store, run.id, points) == 0
    summary = queries.summaries(store)[run.id]["loss"]
    assert summary == {"last": -89.0, "last_step": 99, "min": -89.0, "max": 10.0, "count": 100}
    steps, values, _ = queries.metric_series(store, run.id, "loss", max_points=10)
    assert len(steps) == 10 and steps[0] == 0
    queries.truncate_metrics(store, run.id, 49)
    assert queries.summaries(store)[run.id]["loss"] == {"last": -39.0, "last_step": 49, "min": -39.0,
                                                         "max": 10.0, "count": 50}


def test_journal_survives_an_unavailable_store_and_replays_once(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    run = queries.create_run(store, {})
    logger = MetricLogger(None, run.id, tmp_path / "metrics.jsonl", batch_points=10)
    for step in range(1, 26):
        logger.log(step, loss=1.0 / step)
    logger.close()
    assert queries.summaries(store) == {}
    assert replay_journal(store, run.id, tmp_path / "metrics.jsonl") == 25
    assert replay_journal(store, run.id, tmp_path / "metrics.jsonl") == 0
    assert queries.summaries(store)[run.id]["loss"]["count"] == 25
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"s": 26, "t": 1, "m": {"lo')  # torn by a kill mid-write
    assert len(read_journal(tmp_path / "metrics.jsonl")) == 25


def test_logger_keeps_training_when_the_database_is_locked_out(tmp_path):
    path = tmp_path / "runs.db"
    store = Store(f"sqlite:///{path}")
    run = queries.create_run(store, {})
    logger = MetricLogger(store, run.id, tmp_path / "metrics.jsonl", batch_points=5, batch_seconds=0.05)
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("begin exclusive")
    started = time.monotonic()
    for step in range(1, 6):
        logger.log(step, loss=float(step))  # the background flush fails; logging does not wait
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 60
    while logger.store_ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not logger.store_ok
    blocker.rollback()
    blocker.close()
    for step in range(6, 11):
        logger.log(step, loss=float(step))
    logger.close()
    assert logger.store_ok and queries.summaries(store)[run.id]["loss"]["count"] == 10


def _writer(url: str, run_id: int, key: str, n: int, batch: int) -> None:
    store = Store(url)
    for start in range(0, n, batch):
        queries.insert_metrics(store, run_id, [(key, s, float(s), time.time()) for s in range(start, min(n, start + batch))])


def test_eight_writers_and_a_polling_reader_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)
    runs = [queries.create_run(store, {}).id for _ in range(4)]
    n = 3000
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, runs[i % 4], f"k{i}", n, 100)) for i in range(8)]
    for p in procs:
        p.start()
    polls = 0
    while any(p.is_alive() for p in procs):
        queries.run_records(store)
        queries.summaries(store)
        polls += 1
        time.sleep(0.02)
    assert all(p.exitcode == 0 for p in procs)
    assert polls > 0
    sums = queries.summaries(store)
    for i in range(8):
        s = sums[runs[i % 4]][f"k{i}"]
        assert (s["count"], s["min"], s["max"], s["last_step"]) == (n, 0.0, n - 1.0, n - 1)
        steps, _, _ = queries.metric_series(store, runs[i % 4], f"k{i}", max_points=10**6)
        assert steps == list(range(n))


def test_head_read_from_files_matches_alembic():
    from alembic.script import ScriptDirectory

    from core.store.db import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()

"""The store: migrations, refusal of newer or foreign databases, idempotent metrics, concurrency."""

import multiprocessing as mp
import sqlite3
import time

import pytest
from sqlalchemy import inspect, text

from conftest import free_port
from core.errors import BadInput
from core.store import Store
from core.store import queries
from core.store.db import head_revision
from core.store.journal import MetricLogger, read_journal, replay_journal


def test_fresh_database_is_migrated_to_head(store_url):
    store = Store(store_url)
    with store.engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == head_revision()
        if store.engine.dialect.name == "sqlite":
            assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
            assert conn.execute(text("pragma foreign_keys")).scalar() == 1
    assert {"runs", "metrics", "metric_summaries", "evaluations", "artifacts", "sweeps", "tags", "notes",
            "status_events"} <= set(inspect(store.engine).get_table_names())
    Store(store_url).close()  # a second open finds it at head and changes nothing


def test_an_older_database_is_migrated_to_head_keeping_its_runs(store_url):
    from alembic import command

    from core.store.db import alembic_config

    store = Store(store_url)
    run = queries.create_run(store, {"x": 1}, name="kept")
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0004")
        assert "executor_spec" not in {c["name"] for c in inspect(conn).get_columns("runs")}
    store.close()
    store = Store(store_url)
    assert queries.get_run(store, run.id).name == "kept"
    queries.update_run(store, run.id, executor_spec={"nodes": 2})
    assert queries.get_run(store, run.id).executor_spec == {"nodes": 2}


def test_a_newer_postgresql_database_is_refused_and_not_modified(postgres_url):
    store = Store(postgres_url)
    run = queries.create_run(store, {"x": 1})
    with store.engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '9999_from_the_future'"))
    store.close()
    with pytest.raises(BadInput, match="newer than this ddpm-tui") as refused:
        Store(postgres_url)
    assert "postgres@127.0.0.1" in str(refused.value)
    store = Store(postgres_url, migrate=False)
    assert queries.get_run(store, run.id).config == {"x": 1}
    with store.engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "9999_from_the_future"


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


def test_metrics_are_idempotent_and_summaries_exact(store_url):
    store = Store(store_url)
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


def test_journal_survives_an_unavailable_store_and_replays_once(tmp_path, store_url):
    store = Store(store_url)
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


def test_eight_writers_and_a_polling_reader_lose_nothing(store_url):
    url = store_url
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


def test_another_programs_sqlite_database_is_refused_unchanged(tmp_path, cli):
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table notes (id integer primary key, body text)")
        conn.execute("insert into notes (body) values ('keep me')")
    conn.close()
    before = path.read_bytes()
    for args in (["runs", "list"], ["train", "--data", "demo", "--max-steps", "1"]):
        r = cli("--db", f"sqlite:///{path}", *args)
        assert r.code == 2 and "not a ddpm-tui database (it holds other tables: notes)" in r.err, r
    assert path.read_bytes() == before
    assert not (tmp_path / "notes.db-wal").exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"


def test_schema_creation_is_one_transaction(tmp_path, monkeypatch):
    """A failure half-way through the migrations leaves no table behind."""
    from alembic.operations import Operations

    created = []
    original = Operations.create_table

    def create_then_fail(self, name, *columns, **kw):
        created.append(name)
        if len(created) == 3:
            raise RuntimeError("killed here")
        return original(self, name, *columns, **kw)

    monkeypatch.setattr(Operations, "create_table", create_then_fail)
    path = tmp_path / "runs.db"
    with pytest.raises(RuntimeError, match="killed here"):
        Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("select name from sqlite_master where type='table'").fetchall() == []
    monkeypatch.setattr(Operations, "create_table", original)
    Store(f"sqlite:///{path}").close()


def test_a_locked_database_is_busy_not_bad_input(workdir, cli, pcam, monkeypatch):
    from conftest import TINY

    assert cli("train", "--data", pcam, *TINY, "--max-steps", "1").code == 0
    monkeypatch.setenv("DDPM_TUI_BUSY_TIMEOUT", "0.2")
    holder = sqlite3.connect(workdir / "runs.db")
    holder.execute("begin exclusive")
    try:
        for args in (["runs", "tag", "1", "x"], ["runs", "note", "1", "hello"]):
            r = cli(*args)
            assert r.code == 1 and "database is busy" in r.err and len(r.err.strip().splitlines()) == 1, r
    finally:
        holder.rollback()
        holder.close()
    assert cli("runs", "tag", "1", "x").code == 0


def test_database_urls_missing_drivers_and_passwords(workdir, cli):
    r = cli("--db", "postgresql+pg8000://alice:s3cret@db.example/runs", "runs", "list")
    assert r.code == 2 and "its driver 'pg8000'" in r.err and "is not installed (pip install" in r.err
    assert "s3cret" not in r.err and "alice:***@db.example" in r.err
    r = cli("--db", "nosuchdb://x/y", "runs", "list")
    assert r.code == 2 and "unknown kind of database" in r.err
    assert not (workdir / "runs.db").exists()


def test_an_unreachable_postgresql_server_is_one_line_without_its_password(workdir, cli, pcam):
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://alice:s3cret@127.0.0.1:{port}/runs"
    for args in (["runs", "list"], ["train", "--data", pcam, "--max-steps", "1"], ["runs", "show", "1"]):
        r = cli("--db", url, *args)
        assert r.code == 2 and r.err.count("\n") == 1, r
        assert "cannot open the database" in r.err and "s3cret" not in r.err and "alice:***@" in r.err
    assert not any((workdir / "runs").glob("*"))


def test_children_get_the_store_url_from_the_environment_not_the_command_line(workdir, cli):
    from core.runner.processes import run_command

    command = run_command(7)
    assert command[-3:] == ["-m", "core.runner.execute", "7"] and not any("sqlite" in c for c in command)


def test_new_stores_and_run_directories_are_private(workdir, cli, pcam):
    from conftest import TINY

    assert cli("train", "--data", pcam, *TINY, "--max-steps", "1").code == 0
    assert (workdir / "runs.db").stat().st_mode & 0o777 == 0o600
    assert (workdir / "runs" / "1").stat().st_mode & 0o777 == 0o700


def test_failed_commands_create_no_database(workdir, cli, pcam):
    from conftest import TINY

    for args in (["train", "--data", pcam, *TINY, "--lr", "nan"], ["runs", "show", "3"], ["runs", "stop", "3"],
                 ["runs", "rm", "3", "--yes"], ["sample", "3", "--out", "a.png"], ["runs", "tag", "3", "x"],
                 ["launch", "--data", pcam, "--seed", "-1"], ["ablate", "--data", pcam, "--schedule", "a,b"]):
        r = cli(*args)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, (args, r)
        assert not (workdir / "runs.db").exists(), args
    r = cli("runs", "list", "--json")
    assert r.code == 0 and r.out.strip() == "[]" and not (workdir / "runs.db").exists()


def test_a_huge_run_id_is_one_line(workdir, cli, pcam):
    from conftest import TINY

    assert cli("train", "--data", pcam, *TINY, "--max-steps", "1").code == 0
    for args in (["runs", "show", "99999999999999999999999"], ["runs", "stop", str(2**63)],
                 ["sample", "123456789012345678901234567890", "--out", "a.png"]):
        r = cli(*args)
        assert r.code == 2 and "no run with id" in r.err and len(r.err.strip().splitlines()) == 1, (args, r)


def test_a_database_before_pid_start_times_is_migrated_keeping_its_runs(store_url):
    from alembic import command

    from core.store.db import alembic_config

    store = Store(store_url)
    run = queries.create_run(store, {"x": 1}, status="running", pid=4321, pid_started=1.5e9)
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0005")
        assert "pid_started" not in {c["name"] for c in inspect(conn).get_columns("runs")}
    store.close()
    store = Store(store_url)
    kept = queries.get_run(store, run.id)
    assert (kept.pid, kept.pid_started) == (4321, None), "an older row has no start time: its pid alone is checked"

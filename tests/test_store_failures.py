"""The store under concurrent first use and on a broken disk: the schema is created once, and a
read-only or full database is one clear line with the contract's exit code (issue 17)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conftest import seed_store
from core.store import Store, queries
ROOT = Path(__file__).resolve().parents[1]

# each process waits for the start file, so all of them open the fresh database at the same moment
FIRST_USE = """
import os, sys, time
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
from core.store import Store
Store(sys.argv[1]).close()
"""


def test_processes_opening_a_fresh_postgresql_database_at_once_all_succeed(postgres_url, tmp_path):
    start = tmp_path / "start"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    processes = [subprocess.Popen([sys.executable, "-c", FIRST_USE, postgres_url, str(start)], env=env,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True) for _ in range(4)]
    try:
        time.sleep(3)  # their imports done, all are polling for the start file
        start.touch()
        errors = [p.communicate(timeout=120)[1] for p in processes]
        assert [p.returncode for p in processes] == [0] * 4, "\n".join(e[-800:] for e in errors)
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from alembic_version")).scalar() == 1
    engine.dispose()


def test_a_database_that_cannot_grow_is_disk_full_exit_1(workdir, cli, monkeypatch):
    import core.store.db as db

    seed_store(workdir)
    before = queries.notes_by_run(Store(f"sqlite:///{workdir / 'runs.db'}"), [1])
    pragmas = db._sqlite_pragmas

    def capped(connection, record):  # SQLite's own SQLITE_FULL: the file may not grow past its size
        pragmas(connection, record)
        connection.execute("PRAGMA max_page_count = 1")

    monkeypatch.setattr(db, "_sqlite_pragmas", capped)
    r = cli("runs", "note", "1", "x" * 200_000)
    assert r.code == 1 and "disk full" in r.err and len(r.err.strip().splitlines()) == 1, r
    monkeypatch.setattr(db, "_sqlite_pragmas", pragmas)
    assert queries.notes_by_run(Store(f"sqlite:///{workdir / 'runs.db'}"), [1]) == before


def test_resuming_a_run_without_a_checkpoint_on_a_full_disk_fails_before_starting(workdir, cli, monkeypatch):
    import shutil

    from core.train import checkpoint

    seed_store(workdir)  # run 2 stopped at step 40 with no checkpoint
    usage = shutil.disk_usage(workdir)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda _: usage._replace(free=0))
    r = cli("runs", "resume", "2", "--restart")
    assert r.code == 1 and "disk full" in r.err, r
    assert queries.get_run(Store(f"sqlite:///{workdir / 'runs.db'}"), 2).status == "stopped"


@pytest.fixture
def small_filesystem(tmp_path):
    """A 1 MiB tmpfs (the test is skipped where this process may not mount one)."""
    where = tmp_path / "fs"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_store_on_a_full_or_read_only_filesystem(small_filesystem, cli, monkeypatch):
    monkeypatch.chdir(small_filesystem)
    seed_store(small_filesystem, n_runs=1)
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    for argv in (["runs", "list"], ["runs", "note", "1", "hello"]):  # SQLite: "unable to open database file"
        r = cli(*argv)
        assert r.code == 2 and "read-only" in r.err and "runs.db" in r.err, r
    subprocess.run(["mount", "-o", "remount,rw", str(small_filesystem)], check=True)
    subprocess.run(["dd", "if=/dev/zero", f"of={small_filesystem / 'fill'}", "bs=4k"], capture_output=True)
    r = cli("runs", "note", "1", "hello")  # SQLite: "disk I/O error", as it cannot size runs.db-shm
    assert r.code == 1 and "disk full" in r.err and len(r.err.strip().splitlines()) == 1, r

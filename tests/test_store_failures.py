"""The store under concurrent first use and on a broken disk: the schema is created once, and a
read-only or full database is one clear line with the contract's exit code (issue 17)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

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

"""One table of bad inputs across every command: each row is a command line a user (or an attacker)
could type, the exit code it must end with, the words its one-line error must hold, and the promise
that nothing already stored changed. Add a row for every new command's flags."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest
from sqlalchemy import create_engine, inspect, text

from conftest import TINY, seed_store, write_pcam


@dataclass(frozen=True)
class Case:
    """`argv` may hold {pcam} (a small PCam folder), {work} (the working directory) and {db} (the
    store's URL). `setup` is "empty" (no store yet) or "seeded" (three runs written directly)."""

    id: str
    argv: list[str]
    code: int
    words: list[str]
    setup: str = "empty"
    env: dict[str, str] = field(default_factory=dict)
    lines: int = 1  # lines on stderr


CASES: list[Case] = [
    # ---- secrets and terminal safety -------------------------------------------------------------
    # ---- unbounded sizes and half-stored work ----------------------------------------------------
    # ---- values that must be refused ---------------------------------------------------------------
    # ---- exit codes -------------------------------------------------------------------------------
    # ---- first use ---------------------------------------------------------------------------------
    # the launch form's numeric fields had no upper limit (a stray "3456" typed into one was accepted)
    Case("train-shuffle-window-too-large", ["train", "--data", "{pcam}", *TINY, "--shuffle-window", "8345633"], 2,
         ["--shuffle-window: 8345633 is too large (at most 512"]),
    Case("launch-dim-too-large", ["launch", "--data", "{pcam}", *TINY, "--dim", "4096"], 2,
         ["--dim: 4096 is too large (at most 1024"]),
    Case("train-res-blocks-too-large", ["train", "--data", "{pcam}", *TINY, "--res-blocks", "100"], 2,
         ["--res-blocks: 100 is too large (at most 16"]),
    # ---- statistics ---------------------------------------------------------------------------------
    Case("train-unknown-schedule", ["train", "--data", "{pcam}", *TINY, "--schedule", "exp"], 2,
         ["--schedule: unknown value 'exp'"]),
    Case("runs-show-missing", ["runs", "show", "99"], 2, ["99"], setup="seeded"),
]


def store_fingerprint(work) -> str:
    """A digest of every row of every table in runs.db and of every file under runs/ (names and
    bytes): equal before and after a refused command means nothing stored changed."""
    digest = hashlib.sha256()
    db = work / "runs.db"
    if db.exists():
        engine = create_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            for table in sorted(inspect(conn).get_table_names()):
                for row in conn.execute(text(f'SELECT * FROM "{table}" ORDER BY 1')):
                    digest.update(repr((table, tuple(row))).encode())
        engine.dispose()
    runs = work / "runs"
    if runs.exists():
        for path in sorted(p for p in runs.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(work)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(case, workdir, cli, monkeypatch):
    pcam = write_pcam(workdir / "pcam", {"train": 8, "valid": 4, "test": 4})
    if case.setup == "seeded":
        seed_store(workdir)
    else:
        assert case.setup == "empty", case.setup
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    before = store_fingerprint(workdir)
    argv = [a.format(pcam=pcam, work=workdir, db=f"sqlite:///{workdir / 'runs.db'}") for a in case.argv]
    r = cli(*argv)
    assert r.code == case.code, r
    for word in case.words:
        assert word in r.err, r
    assert len(r.err.strip().splitlines()) == case.lines, r.err
    assert store_fingerprint(workdir) == before, "a refused command changed what was stored"
    if case.setup == "empty":
        assert not (workdir / "runs").exists(), "a refused command left a runs directory"

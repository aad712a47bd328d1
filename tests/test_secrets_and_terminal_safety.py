"""Secrets in database URLs are never shown, and text from the store, logs and arguments reaches
the terminal with its control characters made visible (issue 17)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import seed_store
from core.store import Store, queries
from core.store.db import hide_secrets, redact

# the three forms issue 17 found printed: a password in the query, a socket URL's query, an '@' in the password
SECRET_URLS = [
    "postgresql+psycopg://alice@127.0.0.1:1/runs?password=S3cret",
    "postgresql+psycopg:///runs?host=/nonexistent-socket-dir&user=a&password=S3cret",
    "postgresql+psycopg://alice:S3@cret@127.0.0.1:1/runs",
]
HOSTILE = "evil\x1b]52;c;aGk=\x07\x1b[2J\x9b2J\x00nul\x08bs"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\x00", "\x08")


@pytest.mark.parametrize("url", SECRET_URLS + ["postgresql://alice:S3cret@h/d?sslpassword=S3cret&password=a&password=S3cret"])
def test_redact_hides_every_form_of_password(url):
    shown = redact(url)
    assert "cret" not in shown and "***" in shown, shown
    assert "alice" in shown or "user=a" in shown, "only the secret is hidden"


def test_redact_hides_the_password_of_a_url_sqlalchemy_cannot_parse():
    shown = redact("postgresql+psycopg://alice:S3@cret@[::1]:5432/runs?sslpassword=S3cret")
    assert shown == "postgresql+psycopg://***@[::1]:5432/runs?sslpassword=***"


def test_redact_leaves_a_url_without_secrets_as_typed():
    for url in ("sqlite:///runs.db", "sqlite:////tmp/a@b/runs.db", "postgresql+psycopg://alice@db.example:5432/runs"):
        assert redact(url) == url


def test_a_drivers_message_loses_the_password_it_quotes():
    message = "failed to resolve host 'cret@127.0.0.1': Name or service not known"
    assert hide_secrets(message, SECRET_URLS[2]) == \
        "failed to resolve host '***@127.0.0.1': Name or service not known"


@pytest.mark.parametrize("url", SECRET_URLS)
def test_cannot_open_the_database_hides_the_password(url, workdir, cli):
    for argv in (["--db", url, "runs", "list"], ["runs", "list", "--db", url]):
        r = cli(*argv)
        assert r.code == 2 and "cannot open the database" in r.err, r
        assert "cret" not in r.err and len(r.err.strip().splitlines()) == 1, r


def test_the_tui_toast_hides_the_password(monkeypatch):
    from core.services.lab import Lab
    from ddpm_tui.tui.app import DdpmApp

    app = DdpmApp(Lab(SECRET_URLS[2], Path("runs")))
    shown = []
    monkeypatch.setattr(app, "notify", lambda message, **_: shown.append(message))
    app.report_error("reading runs", RuntimeError("failed to resolve host 'cret@127.0.0.1'"))
    assert shown == ["reading runs: failed to resolve host '***@127.0.0.1'"]


def hostile_store(root):
    """A seeded store whose run 1 has a name, a tag, a note, a config value and a log line holding
    terminal escapes (OSC 52 clipboard write, clear screen, C1 CSI, NUL, backspace)."""
    url, runs_dir = seed_store(root)
    store = Store(url)
    run = queries.get_run(store, 1)
    queries.update_run(store, 1, name=HOSTILE, config=dict(run.config, data=HOSTILE))
    queries.add_tags(store, 1, [HOSTILE])
    queries.add_note(store, 1, HOSTILE)
    store.close()
    (runs_dir / "1" / "train.log").write_text(f"step 1\n{HOSTILE}\nstep 2\n")
    return url


def test_runs_logs_shows_escapes_visibly(workdir, cli):
    hostile_store(workdir)
    r = cli("runs", "logs", "1")
    assert r.code == 0 and not any(c in r.out for c in RAW_CONTROLS), r
    assert "evil\\x1b]52;c;aGk=\\x07\\x1b[2J\\x9b2J\\x00nul\\x08bs" in r.out
    assert r.out.splitlines()[0] == "step 1"


def test_export_to_stdout_is_safe_and_to_a_file_is_exact(workdir, cli):
    hostile_store(workdir)
    csv_out = cli("export")
    assert csv_out.code == 0 and not any(c in csv_out.out for c in RAW_CONTROLS), csv_out
    assert csv_out.out.count("evil\\x1b]52;c;aGk=\\x07") == 4, "name, tag, note and config are all shown"
    json_out = cli("export", "--format", "json")
    assert json_out.code == 0 and not any(c in json_out.out for c in RAW_CONTROLS), json_out
    assert json.loads(json_out.out)[0]["name"] == HOSTILE, "JSON on stdout stays valid and exact"
    assert cli("export", "--out", "runs.csv").code == 0
    with open(workdir / "runs.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    first = dict(zip(rows[0], rows[1]))
    assert (first["name"], first["tags"], first["notes"], first["config.data"]) == (HOSTILE,) * 4


def test_an_error_echoing_a_path_shows_its_escapes_visibly(workdir, cli):
    r = cli("data", "check", f"missing{HOSTILE}")
    assert r.code == 2 and not any(c in r.err for c in RAW_CONTROLS), r
    assert "missingevil\\x1b]52;c;aGk=" in r.err


def test_the_other_nodes_command_hides_the_password(postgres_url, tmp_path, pcam):
    """`train --nnodes 2` prints the command for the other nodes with DDPM_TUI_DB in it."""
    import os
    import signal

    from conftest import TINY, ddpm_subprocess, free_port

    url = f"{postgres_url}?password=S3cret"  # the test server trusts every connection: the password is only shown
    first = ddpm_subprocess(["--db", url, "train", "--data", pcam, *TINY, "--max-steps", 2, "--nnodes", 2,
                             "--rdzv-endpoint", f"127.0.0.1:{free_port()}"], tmp_path, start_new_session=True)
    printed = ""
    try:  # its torchrun agent, in the same process group, waits for the second node
        while "waiting for 1 more node(s)" not in printed:
            line = first.stderr.readline()
            assert line, f"the first node ended early: {printed}"
            printed += line
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert "password=***" in printed and "S3cret" not in printed, printed


def test_warnings_show_escapes_visibly():
    import logging

    from ddpm_tui.cli import PrintableFormatter

    record = logging.LogRecord("core.data", logging.WARNING, __file__, 1, "skipped %s", (HOSTILE,), None)
    line = PrintableFormatter("warning: %(message)s").format(record)
    assert line.startswith("warning: skipped evil\\x1b]52;c;aGk=\\x07") and not any(c in line for c in RAW_CONTROLS)

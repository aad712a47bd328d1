"""Shared fixtures: small datasets in the real layouts, an isolated store, a CLI runner."""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest

# The suite runs trainers, workers and evaluations side by side on few cores. Two processes of two
# OpenMP threads each on two busy cores wait on each other's descheduled threads in every parallel
# region: tests/test_run_dir.py took 123 s beside one busy core, 10 s with one thread per process.
# Every process of the suite, and every one it starts, gets one thread unless told otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


def write_pcam(root: Path, counts: dict[str, int] | None = None, seed: int = 0, x_shape=(96, 96, 3),
               x_dtype=np.uint8, chunks=True) -> Path:
    """A tiny PCam-layout dataset: smooth random 'tissue' with labels alternating 0/1."""
    counts = counts or {"train": 64, "valid": 16, "test": 16}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in counts.items():
        base = rng.integers(0, 256, size=(n, 12, 12, 3)).astype(np.float64)
        x = np.kron(base, np.ones((8, 8, 1)))[:, : x_shape[0], : x_shape[1]].astype(x_dtype)
        if x.shape[1:] != x_shape:
            x = np.zeros((n, *x_shape), dtype=x_dtype)
        y = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1)
        stem = root / f"camelyonpatch_level_2_split_{split}"
        with h5py.File(f"{stem}_x.h5", "w") as f:
            f.create_dataset("x", data=x, chunks=(1, *x.shape[1:]) if chunks else None)
        with h5py.File(f"{stem}_y.h5", "w") as f:
            f.create_dataset("y", data=y)
    return root


def write_kaggle(root: Path, n: int = 40, seed: int = 0, index_column: bool = False) -> tuple[Path, list[str]]:
    """A Kaggle-layout folder: train/<40-hex id>.tif and train_labels.csv."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True, exist_ok=True)
    ids = [hashlib.sha1(f"{seed}-{i}".encode()).hexdigest() for i in range(n)]
    for pid in ids:
        iio.imwrite(root / "train" / f"{pid}.tif", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    with (root / "train_labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(([""] if index_column else []) + ["id", "label"])
        for i, pid in enumerate(ids):
            w.writerow(([i] if index_column else []) + [pid, i % 2])
    return root, ids


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """A cache (demo dataset, verification stamps) of this session's own: tests never write the user's
    ~/.cache/ddpm-tui, and parallel workers (pytest -n) never build the demo set in one place at once.
    Tests that set DDPM_TUI_CACHE themselves (monkeypatch, a child's env) still win."""
    saved = os.environ.get("DDPM_TUI_CACHE")
    os.environ["DDPM_TUI_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("DDPM_TUI_CACHE", None)
    else:
        os.environ["DDPM_TUI_CACHE"] = saved


@pytest.fixture
def pcam(tmp_path) -> Path:
    return write_pcam(tmp_path / "pcam")


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A working directory with its own runs.db, runs/ and demo cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDPM_TUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DDPM_TUI_DB", raising=False)
    monkeypatch.delenv("DDPM_TUI_RUNS", raising=False)
    return tmp_path


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-1500:]!r})"


@pytest.fixture
def cli(capsys):
    """Run `ddpm-tui ARGS` in this process; returns exit code, stdout, stderr."""
    from ddpm_tui.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def ddpm_subprocess(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    """Start `ddpm-tui ARGS` as a real process (for signals and crashes)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), DDPM_TUI_CACHE=str(cwd / "cache"))
    return subprocess.Popen([sys.executable, "-m", "ddpm_tui", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# options for a model small enough that a CPU step takes milliseconds
TINY = ["--dim", "16", "--dim-mults", "1,2", "--res-blocks", "1", "--attention", "none",
        "--batch-size", "8", "--timesteps", "50", "--warmup-steps", "2", "--device", "cpu"]


def seed_store(root: Path, n_runs: int = 3) -> tuple[str, Path]:
    """A store with finished/running/queued runs, loss curves and a sample grid, for TUI tests.
    Returns (db_url, runs_dir). Nothing trains: rows and files are written directly."""
    from core.config import TrainConfig
    from core.store import Store, queries

    url, runs_dir = f"sqlite:///{root / 'runs.db'}", root / "runs"
    store = Store(url)
    statuses = ["finished", "stopped", "queued", "failed", "crashed"]
    for i in range(n_runs):
        cfg = TrainConfig(data=str(root / "pcam"), schedule=("cosine", "linear")[i % 2],
                          attention=("none", "full")[i % 2], max_steps=100, name=f"seed-{i + 1}").to_dict()
        run = queries.create_run(store, cfg, status=statuses[i % len(statuses)], name=cfg["name"], total_steps=100)
        run_dir = runs_dir / str(run.id)
        (run_dir / "samples").mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps(cfg))
        queries.update_run(store, run.id, run_dir=str(run_dir), step=100 if i % 5 == 0 else 40,
                           host="test-host", exit_reason="reached step 100" if i % 5 == 0 else None)
        points = [("train/loss", s, 1.0 / (s + i + 1), 1000.0 + s) for s in range(1, 101)]
        points += [("train/loss_smooth", s, 1.2 / (s + i + 1), 1000.0 + s) for s in range(1, 101)]
        queries.insert_metrics(store, run.id, points)
        grid = np.full((50, 50, 3), 40 * (i + 1), np.uint8)
        iio.imwrite(run_dir / "samples" / "step-00000100.png", grid)
        queries.add_artifact(store, run.id, "samples", str(run_dir / "samples" / "step-00000100.png"), 100)
        (run_dir / "train.log").write_text(f"run {run.id} line 1\nrun {run.id} line 2\n")
    store.close()
    return url, runs_dir


@pytest.fixture
def tui_app(tmp_path):
    """A DdpmApp over a seeded store (use `async with tui_app.run_test() as pilot`)."""
    from ddpm_tui.tui.app import DdpmApp
    from core.services.lab import Lab

    write_pcam(tmp_path / "pcam")
    url, runs_dir = seed_store(tmp_path)
    return DdpmApp(Lab(url, runs_dir))


async def wait_for(pilot, condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Let the app run until `condition()` holds (workers and refresh ticks need real time); fail
    naming `what` if it does not within `timeout` seconds. Use it instead of a fixed pause."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.02)


async def wait_screen(pilot, kind):
    """The active screen once it is a mounted `kind`."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind) and pilot.app.screen.is_mounted,
                   timeout=10, what=kind.__name__)
    return pilot.app.screen


async def open_view(pilot, key: str, kind):
    """Press the digit of a view and return its screen, mounted and settled."""
    await pilot.press(key)
    screen = await wait_screen(pilot, kind)
    await pilot.pause()  # its pending messages processed
    return screen


def run_on_pty(args: list[str], cwd: Path, timeout: float = 120.0, size=(100, 30), env: dict | None = None):
    """Run `ddpm-tui ARGS` (the installed console script) on a pseudo-terminal, as a person types it:
    stdin, stdout and stderr are the terminal. Returns (exit code, everything it drew, CRs removed)."""
    import pty
    import select
    import shutil
    import time

    script = shutil.which("ddpm-tui", path=str(Path(sys.executable).parent)) or "ddpm-tui"
    master, slave = pty.openpty()
    full_env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(size[0]), LINES=str(size[1]),
                    DDPM_TUI_CACHE=str(cwd / "cache"), **(env or {}))
    full_env.pop("NO_COLOR", None)
    proc = subprocess.Popen([script, *map(str, args)], cwd=cwd, env=full_env, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(master)
    code = proc.wait(timeout=30)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r", "")


def wait_for_checkpoint(proc: subprocess.Popen, path: Path, timeout: float = 120.0) -> None:
    """Wait until the training process `proc` has written the checkpoint `path` (it must not end first)."""
    import time

    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, f"no {path.name} within {timeout:g} s"
        time.sleep(0.01)


def poll_until(predicate, timeout: float = 60.0, every: float = 0.1, what: str = "condition"):
    """Call `predicate` until it returns something truthy (returned), or fail after `timeout` s
    naming `what`. Use it instead of a fixed sleep."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# ---- PostgreSQL: a real server for the store's tests ----------------------------------------------
def postgres_bin() -> Path | None:
    """The folder of Debian's (or any) PostgreSQL server programs, if installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 (trust auth, fsync off), for the whole session.
    Run as the `postgres` user when the tests run as root, since the server refuses root."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.fail("PostgreSQL's server programs (initdb, pg_ctl) are not installed: the store's tests run on "
                    "PostgreSQL too; install Debian's postgresql package (.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="ddpm-tui-pg-"))
    as_server_user: list[str] = []
    if os.geteuid() == 0:
        as_server_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run([*as_server_user, bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync",
                    "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_server_user, bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "start", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_server_user, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a new, empty database on the session's server (dropped afterwards)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of a fresh store: an SQLite file, then a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(workdir, monkeypatch):
    """A SQLite store in the working directory, named in DDPM_TUI_DB as detached processes see it."""
    from core.store import Store

    url = f"sqlite:///{workdir / 'runs.db'}"
    monkeypatch.setenv("DDPM_TUI_DB", url)
    return Store(url)

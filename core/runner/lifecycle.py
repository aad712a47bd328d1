"""Run lifecycle: launch, reconcile, stop, kill, resume, delete.

queued -> running -> finished | failed | stopped, and crashed when the process is gone without
saying so (its pid is dead on this host, or its heartbeat is stale).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from core.config import TrainConfig
from core.errors import BadInput
from core.runner.liveness import reconcile
from core.runner.processes import SIGKILL, SIGTERM, pid_alive, run_command, signal_group, spawn_detached
from core.store import queries
from core.store.db import Store
from core.runner.sweeps import expand_grid, grid_axes
from core.train.run import check_resumable, check_training_data, new_run

def store_url_for_children(store: Store) -> str:
    """The store's URL with a relative SQLite path made absolute, so children in any cwd find it."""
    url = store.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            return "sqlite:///" + str(Path(path).resolve())
    return url


def start_process(store: Store, runs_dir: Path, run_id: int, env_extra: dict | None = None):
    """Start the detached process that trains run `run_id` (which must already be `running`)."""
    run = queries.get_run(store, run_id)
    env = dict(os.environ, **(env_extra or {}))
    proc = spawn_detached(run_command(store_url_for_children(store), Path(runs_dir).resolve(), run_id),
                          Path(run.run_dir) / "stdout.log", env=env)
    queries.update_run(store, run_id, pid=proc.pid, pgid=proc.pid, host=socket.gethostname(),
                       heartbeat_at=time.time())
    return proc


def launch(store: Store, runs_dir: Path, cfg: TrainConfig, queue: bool = False, sweep_id: int | None = None):
    """Create a run; start it detached now, or leave it `queued` for a worker. Returns the run."""
    run = new_run(store, runs_dir, cfg, status="queued" if queue else "running", sweep_id=sweep_id)
    if not queue:
        start_process(store, runs_dir, run.id)
    return queries.get_run(store, run.id)


def _running(store: Store, run_id) -> queries.Run:
    reconcile(store)
    run = queries.get_run(store, run_id)
    if run.status != "running":
        raise BadInput(f"run {run.id} is not running (status {run.status})")
    return run


def stop(store: Store, run_id, wait: float = 0.0) -> queries.Run:
    """SIGTERM: the trainer checkpoints and records `stopped`. Optionally wait for that."""
    run = _running(store, run_id)
    if not signal_group(None, run.pid, SIGTERM):
        raise BadInput(f"run {run.id}: process {run.pid} is not there")
    deadline = time.time() + wait
    while time.time() < deadline and pid_alive(run.pid):
        time.sleep(0.1)
    return queries.get_run(store, run.id)


def kill(store: Store, run_id, grace: float = 10.0) -> queries.Run:
    """SIGTERM, then SIGKILL to the whole process group if it is still alive after `grace` seconds."""
    run = _running(store, run_id)
    signal_group(None, run.pid, SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and pid_alive(run.pid):
        time.sleep(0.1)
    if pid_alive(run.pid):
        signal_group(run.pgid, run.pid, SIGKILL)
        for _ in range(50):
            if not pid_alive(run.pid):
                break
            time.sleep(0.1)
        queries.set_status(store, run.id, "stopped", reason=f"killed (SIGKILL after {grace:g} s grace)",
                           expect=("running",))
    return queries.get_run(store, run.id)


def resume(store: Store, runs_dir: Path, run_id, queue: bool = False) -> queries.Run:
    """Continue a stopped, crashed or failed run under the same id from its last good checkpoint."""
    reconcile(store)
    run = check_resumable(store, run_id)
    if queue:
        queries.set_status(store, run.id, "queued", reason="queued for resume")
    else:
        queries.set_status(store, run.id, "running", reason="resumed", heartbeat_at=time.time())
        start_process(store, runs_dir, run.id)
    return queries.get_run(store, run.id)


def remove(store: Store, runs_dir: Path, run_id) -> queries.Run:
    """Delete a run's records and its directory; only a directory inside the runs dir is deleted."""
    reconcile(store)
    run = queries.get_run(store, run_id)
    if run.status == "running":
        raise BadInput(f"run {run.id} is running; stop or kill it first")
    root = Path(runs_dir).resolve()
    run_dir = Path(run.run_dir).resolve() if run.run_dir else None
    queries.delete_run(store, run.id)
    if run_dir and run_dir.is_dir() and run_dir.is_relative_to(root) and run_dir != root:
        shutil.rmtree(run_dir)
    return run


def queue_sweep(store: Store, runs_dir: Path, raw_values: dict, seeds: int, config_file=None, name: str = ""):
    """Expand a grid (see sweeps.expand_grid), check each dataset once, then queue every run under
    one new sweep. Nothing is stored when a value or a dataset is bad. Returns (sweep, runs, axes)."""
    configs = expand_grid(raw_values, seeds, config_file, name)
    for cfg in {(c.data, c.classes): c for c in configs}.values():
        check_training_data(cfg)
    axes = grid_axes(raw_values)
    sweep = queries.create_sweep(store, name or "sweep", {"axes": axes, "seeds": seeds, "runs": len(configs)})
    runs = [launch(store, runs_dir, cfg, queue=True, sweep_id=sweep.id) for cfg in configs]
    return sweep, runs, axes

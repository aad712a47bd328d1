"""A training run as the store sees it: create the row and directory, train, record the outcome.

Used by `ddpm-tui train` (foreground) and by the detached process that `launch` and the worker start.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from core.config import TrainConfig, config_from_dict
from core.data import open_split, selected_indices
from core.data.demo import demo_dataset_path
from core.data.sources import KaggleSplit, PCAM_SPLITS, detect_layout
from core.errors import BadInput, WorkFailed
from core.runner.liveness import reconcile
from core.store import queries
from core.store.db import Store
from core.store.journal import MetricLogger, replay_journal, truncate_journal
from core.train.checkpoint import list_checkpoints
from core.train.trainer import StepStats, Trainer, total_steps

log = logging.getLogger("ddpm_tui.train")
HEARTBEAT_SECONDS = 5.0


def cache_dir() -> Path:
    return Path(os.environ.get("DDPM_TUI_CACHE", Path.home() / ".cache" / "ddpm-tui"))


def resolve_data(data: str) -> Path:
    """The dataset folder a --data value names ('demo' builds the demo set on first use)."""
    if data == "demo":
        return demo_dataset_path(cache_dir())
    root = Path(data).expanduser()
    detect_layout(root)
    return root


def check_training_data(cfg: TrainConfig) -> tuple[Path, int]:
    """Open the training split as the trainer will, so bad data fails before anything is stored.
    Returns (data root, number of selected training patches)."""
    root = resolve_data(cfg.data)
    source = open_split(root, "train")
    try:
        return root, len(selected_indices(source, cfg.classes))
    finally:
        source.close()


def new_run(store: Store, runs_dir: Path, cfg: TrainConfig, status: str = "running", sweep_id: int | None = None,
            parent_id: int | None = None) -> queries.Run:
    """Validate the data, then create the run row and its directory with config.json (and the
    Kaggle split, frozen for the run's lifetime)."""
    root, n_selected = check_training_data(cfg)
    run = queries.create_run(store, cfg.to_dict(), status=status, name=cfg.name,
                             total_steps=total_steps(cfg, n_selected), sweep_id=sweep_id, parent_id=parent_id,
                             tags=cfg.tag)
    run_dir = Path(runs_dir).resolve() / str(run.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    if detect_layout(root) == "kaggle":
        split = {name: KaggleSplit(root, name).ids for name in PCAM_SPLITS}
        (run_dir / "split.json").write_text(json.dumps(split) + "\n")
    queries.update_run(store, run.id, run_dir=str(run_dir))
    run.run_dir = str(run_dir)
    return run


class Heartbeat:
    """Writes heartbeat time and current step to the run row every few seconds, from a thread,
    so a long step or checkpoint write never makes a live run look dead."""

    def __init__(self, store: Store, run_id: int, step: Callable[[], int], every: float = HEARTBEAT_SECONDS):
        self.store, self.run_id, self.step, self.every = store, run_id, step, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def beat(self) -> None:
        try:
            queries.update_run(self.store, self.run_id, heartbeat_at=time.time(), step=self.step())
        except Exception as exc:  # a missed beat must never kill training
            log.warning("heartbeat failed: %s", str(exc).splitlines()[0])

    def __enter__(self):
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.beat()


def attach_log_file(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(Path(run_dir) / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger("ddpm_tui").addHandler(handler)
    logging.getLogger("ddpm_tui").setLevel(logging.INFO)
    return handler


def execute_run(store: Store, run_id: int, on_step: Callable[[StepStats], None] | None = None,
                resume: bool = False) -> str:
    """Train run `run_id` in this process until it finishes, is stopped (SIGTERM/SIGINT), or fails.

    Returns the final status. The run's status, pid and heartbeat are kept current in the store.
    """
    run = queries.get_run(store, run_id)
    cfg = config_from_dict(run.config)
    run_dir = Path(run.run_dir)
    split_file = run_dir / "split.json"
    journal = run_dir / "metrics.jsonl"
    handler = attach_log_file(run_dir)
    trainer = None
    try:
        trainer = Trainer(cfg, run_dir, resolve_data(cfg.data), split_file=split_file if split_file.exists() else None,
                          on_step=on_step,
                          on_artifact=lambda kind, path, step: _record_artifact(store, run_id, kind, path, step))
        if resume:
            restored = trainer.resume_from_latest()
            start = trainer.step if restored else 0
            replay_journal(store, run_id, journal)  # points the store missed before the interruption
            truncate_journal(journal, start)
            queries.truncate_metrics(store, run_id, start)
            if restored:
                log.info("resuming run %d from %s", run_id, restored.name)
            else:
                log.info("starting run %d", run_id)
        trainer.metrics = MetricLogger(store, run_id, journal)
        previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

        def request_stop(signum, _frame):
            log.info("received %s: checkpointing and stopping", signal.Signals(signum).name)
            trainer.stop_requested = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        process = dict(started_at=time.time(), ended_at=None, exit_reason=None, host=socket.gethostname(),
                       pid=os.getpid(), pgid=os.getpgid(0), total_steps=trainer.total, step=trainer.step)
        if queries.get_run(store, run_id).status == "running":  # a launcher already said so
            queries.update_run(store, run_id, **process)
        else:
            queries.set_status(store, run_id, "running", reason="resumed" if resume else "started", **process)
        try:
            with Heartbeat(store, run_id, lambda: trainer.step):
                outcome = trainer.fit()
        finally:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
            trainer.metrics.close()
            replay_journal(store, run_id, journal)
        reason = {"finished": f"reached step {trainer.step}", "stopped": f"stopped at step {trainer.step}"}[outcome]
        queries.set_status(store, run_id, outcome, reason=reason, step=trainer.step,
                           checkpoint_path=_latest_ckpt(trainer))
        log.info("run %d %s: %s", run_id, outcome, reason)
        return outcome
    except (BadInput, WorkFailed) as exc:
        queries.set_status(store, run_id, "failed", reason=str(exc),
                           step=trainer.step if trainer else run.step,
                           checkpoint_path=_latest_ckpt(trainer) if trainer else run.checkpoint_path)
        log.error("run %d failed: %s", run_id, exc)
        raise
    except BaseException as exc:
        queries.set_status(store, run_id, "failed", reason=f"{exc.__class__.__name__}: {exc}")
        log.exception("run %d crashed", run_id)
        raise
    finally:
        if trainer:
            trainer.close()
        logging.getLogger("ddpm_tui").removeHandler(handler)
        handler.close()


def _latest_ckpt(trainer: Trainer) -> str | None:
    found = list_checkpoints(trainer.ckpt_dir)
    return str(found[-1]) if found else None


def _record_artifact(store: Store, run_id: int, kind: str, path: Path, step: int) -> None:
    try:
        queries.add_artifact(store, run_id, kind, str(path), step)
        if kind == "checkpoint":
            queries.update_run(store, run_id, checkpoint_path=str(path), step=step)
    except Exception as exc:  # the files are the truth; the index can be rebuilt
        log.warning("could not record %s artifact: %s", kind, str(exc).splitlines()[0])


RESUMABLE = ("stopped", "crashed", "failed", "queued")


def check_resumable(store: Store, run_id: int) -> queries.Run:
    """The run, if it can be resumed now (a `running` run whose process is gone counts as crashed)."""
    reconcile(store)
    run = queries.get_run(store, run_id)
    if run.status == "finished":
        raise BadInput(f"run {run.id} is finished (step {run.step}/{run.total_steps}); nothing to resume")
    if run.status == "running":
        raise BadInput(f"run {run.id} is running (pid {run.pid}); stop it before resuming")
    if not Path(run.run_dir).is_dir():
        raise BadInput(f"run {run.id}: run directory {run.run_dir} is missing")
    return run

"""A training run as the store sees it: check it, create the row and directory, train, record the
outcome.

Used by `ddpm-tui train` (foreground) and by the detached process that `launch`, `runs resume` and
the worker start. Whoever puts a run in `running` names an owner process (core.runner.liveness);
`execute_run` then becomes its one trainer: it holds the run directory's lock, and takes the run
over only if nobody stopped it in the meantime.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from core.config import INT_MAX, TrainConfig
from core.data import cache_dir, open_split, resolve_data, selected_indices
from core.data.check import image_problems
from core.data.prepared import run_split_file
from core.data.sources import KaggleSplit, PCAM_SPLITS, detect_layout
from core.device import pick_device
from core.errors import BadInput, NeedsRestart, WorkFailed
from core.executors import executor_for
from core.executors.local import local_executor
from core.loaded_run import LoadedRun, load_run
from core.run_dir import RunDir
from core.runner.heartbeat import KILL_REQUESTED, Heartbeat
from core.runner.liveness import reconcile
from core.runner.ownership import owner_fields
from core.runner.pod import disrupted_pod, hand_back_to_job, take_back_from_failed_pod
from core.runner.processes import rendezvous_endpoint
from core.runner.run_lock import RunDirLock, trainer_holding
from core.store import queries
from core.store.db import Store
from core.store.journal import MetricLogger, replay_journal, truncate_journal
from core.train import checkpoint as ckpt
from core.train.distributed import Replicas, exit_with_agent, usable_cpus, use_deterministic_algorithms
from core.train.resources import check_training_fits, checkpoint_bytes
from core.train.trainer import StepStats, Trainer, total_steps, warmup_for_run

log = logging.getLogger("ddpm_tui.train")
PRIVATE_DIR = 0o700


@dataclass(frozen=True)
class RunPlan:
    """A config checked against its data, this machine and the runs directory; nothing stored yet."""

    cfg: TrainConfig
    data_root: Path
    total_steps: int
    runs_dir: Path


def prepare_runs_dir(runs_dir: Path) -> Path:
    """The runs directory, created private if missing; BadInput when it cannot hold run directories."""
    root = Path(runs_dir).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise BadInput(f"--runs-dir {runs_dir}: is a file, not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    except OSError as exc:
        raise BadInput(f"--runs-dir {runs_dir}: cannot create it ({exc.strerror})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise BadInput(f"--runs-dir {runs_dir}: not writable")
    return root


def check_training_data(cfg: TrainConfig) -> tuple[Path, int]:
    """Open the training split as the trainer will and check every image, so bad data fails before
    anything is stored. Returns (data root, number of selected training patches)."""
    root = resolve_data(cfg.data)
    problems = image_problems(root, cache_dir())
    if problems:
        more = f" (and {len(problems) - 1} more bad images)" if len(problems) > 1 else ""
        raise BadInput(problems[0] + more)
    source = open_split(root, "train")
    try:
        return root, len(selected_indices(source, cfg.classes))
    finally:
        source.close()


def check_placement(cfg: TrainConfig, device, rdzv_endpoint: str | None = None) -> None:
    """BadInput when this machine cannot start the run's processes: more per node than GPUs on
    CUDA or than CPU cores on CPU, or several nodes with no rendezvous for their torchrun agents."""
    if device.type == "cuda" and cfg.nproc > torch.cuda.device_count():
        raise BadInput(f"--nproc {cfg.nproc}: only {torch.cuda.device_count()} GPU(s) are visible "
                       "(CUDA_VISIBLE_DEVICES); one process per GPU", field="nproc")
    if device.type == "cpu" and cfg.nproc > usable_cpus():
        raise BadInput(f"--nproc {cfg.nproc}: only {usable_cpus()} CPU core(s) are usable here; on CPU at most one "
                       "process per core", field="nproc")
    if cfg.nnodes > 1 and not rdzv_endpoint:
        raise BadInput(f"--nnodes {cfg.nnodes}: several nodes need --rdzv-endpoint HOST:PORT (torchrun on each "
                       "node) or a cluster executor (--executor k8s)", field="nnodes")
    if rdzv_endpoint is not None:
        host, _, port = rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadInput(f"--rdzv-endpoint: expected HOST:PORT, got {rdzv_endpoint!r}")


def plan_run(cfg: TrainConfig, runs_dir: Path, checked_data: dict | None = None,
             rdzv_endpoint: str | None = None, on_this_machine: bool = True) -> RunPlan:
    """Everything that can be checked before a run is stored: the config, its device, processes and
    memory (when it trains on this machine, not on a cluster), the data (every image), the step
    count and the runs directory. `checked_data` remembers datasets already checked, for plans made
    together."""
    cfg.validate()
    if cfg.init_weights:
        ckpt.read_initial_weights(cfg)
    if on_this_machine:
        device = pick_device(cfg.device)
        check_placement(cfg, device, rdzv_endpoint)
        check_training_fits(cfg, device)
    key = (cfg.data, cfg.classes)
    if checked_data is not None and key in checked_data:
        root, n_selected = checked_data[key]
    else:
        root, n_selected = check_training_data(cfg)
        if checked_data is not None:
            checked_data[key] = (root, n_selected)
    steps = total_steps(cfg, n_selected)
    if steps > INT_MAX:
        raise BadInput(f"--epochs {cfg.epochs}: {steps} steps is too many (at most {INT_MAX})")
    runs_root = prepare_runs_dir(runs_dir)
    warmup = warmup_for_run(cfg.warmup_steps, steps)
    if warmup != cfg.warmup_steps:
        log.info("--warmup-steps %d is more than a tenth of this %d-step run: warming up over %d steps",
                 cfg.warmup_steps, steps, warmup)
        cfg = dataclasses.replace(cfg, warmup_steps=warmup)
    return RunPlan(cfg, root, steps, runs_root)


def new_run(store: Store, runs_dir: Path, cfg: TrainConfig, status: str = "running", sweep_id: int | None = None,
            parent_id: int | None = None, plan: RunPlan | None = None, executor: str | None = None) -> queries.Run:
    """Create the run row (owned by this process when `running`) and its private directory with
    config.json (and the Kaggle split, frozen for the run's lifetime). Checks first (plan_run,
    unless a plan is given); when the directory cannot be made, the row is removed again."""
    plan = plan or plan_run(cfg, runs_dir)
    cfg = plan.cfg
    owner = owner_fields() if status == "running" else {}
    run = queries.create_run(store, cfg.to_dict(), status=status, name=cfg.name, total_steps=plan.total_steps,
                             sweep_id=sweep_id, parent_id=parent_id, tags=cfg.tag,
                             executor=executor or local_executor(cfg.world_size), **owner)
    try:
        run_dir = make_run_dir(plan, run.id)
    except WorkFailed:
        queries.delete_run(store, run.id)
        raise
    queries.update_run(store, run.id, run_dir=str(run_dir))
    return run.replace(run_dir=str(run_dir))


def make_run_dir(plan: RunPlan, run_id: int) -> Path:
    """Run `run_id`'s private directory with config.json (and the Kaggle split, frozen for the run's
    lifetime). On failure nothing of it is left and WorkFailed says why."""
    run_dir = plan.runs_dir / str(run_id)
    try:
        run_dir.mkdir(mode=PRIVATE_DIR)
    except OSError as exc:
        raise WorkFailed(f"{run_dir}: cannot create the run directory ({exc.strerror}); nothing was stored") from None
    try:
        RunDir(run_dir).config.write_text(json.dumps(plan.cfg.to_dict(), indent=2) + "\n")
        if detect_layout(plan.data_root) == "kaggle":
            split = {name: KaggleSplit(plan.data_root, name).ids for name in PCAM_SPLITS}
            RunDir(run_dir).split.write_text(json.dumps(split) + "\n")
    except OSError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise WorkFailed(f"{run_dir}: cannot create the run directory ({exc.strerror}); nothing was stored") from None
    return run_dir


def attach_log_file(files: RunDir) -> logging.Handler:
    handler = logging.FileHandler(files.train_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger("ddpm_tui").addHandler(handler)
    logging.getLogger("ddpm_tui").setLevel(logging.INFO)
    return handler


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def execute_run(store: Store, run_id: int, on_step: Callable[[StepStats], None] | None = None,
                agent_pid: int | None = None) -> str:
    """Be the trainer of run `run_id`, which its caller has put in `running`: continue from its newest
    good checkpoint (if any) until it finishes, is stopped (SIGTERM/SIGINT), or fails.

    Returns the final status. A run stopped or killed before this process took it over is left as
    it is (its status is returned). Any failure ends the run `failed` with its reason; the step and
    checkpoint of a run that failed before it trained are left as they were.

    Under torchrun every rank calls this: rank 0 takes the run over and records it, the others only
    train beside it (core.train.distributed); `agent_pid` is the torchrun agent the rank started under.
    """
    stop = threading.Event()

    def request_stop(signum, _frame):
        log.info("received %s: checkpointing and stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    replicas = Replicas.from_env()
    agent_gone = exit_with_agent(agent_pid=agent_pid) if replicas.distributed else (lambda: False)
    try:
        loaded = load_run(store, run_id)
        run, cfg = loaded.record, loaded.cfg
        loaded.files.root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)  # a cluster's fresh volume
        if cfg.deterministic:
            use_deterministic_algorithms()
        if replicas.distributed:
            replicas.join(replicas.device(pick_device(cfg.device)))
        if not replicas.is_main:
            ended = replicas.from_main(None)
            return ended or _train_beside_main(run, cfg, replicas, stop)
        with RunDirLock(run.run_dir, run_id):
            take_back_from_failed_pod(store, run)
            taken = queries.update_run(store, run_id, expect=("running",), match={"started_at": None},
                                       started_at=time.time(), **owner_fields(pgid=os.getpgid(0)))
            if not taken:
                current = queries.get_run(store, run_id)
                if current.status in ("stopped", "killed"):
                    log.info("run %d was %s before training started", run_id, current.status)
                    return replicas.from_main(current.status)
                raise BadInput(f"run {run_id} is {current.status}, not waiting for a trainer")
            replicas.from_main(None)
            return _train(store, run, cfg, replicas, on_step, stop, agent_gone)
    finally:
        replicas.leave()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _trainer(run: queries.Run, cfg: TrainConfig, replicas: Replicas, **hooks) -> Trainer:
    return Trainer(cfg, Path(run.run_dir), resolve_data(cfg.data), replicas=replicas,
                   split_file=run_split_file(run.run_dir), **hooks)


def _train_beside_main(run: queries.Run, cfg: TrainConfig, replicas: Replicas, stop: threading.Event) -> str:
    """A rank other than 0: train its share of every batch; rank 0 records everything."""
    trainer = _trainer(run, cfg, replicas, stop=stop)
    try:
        trainer.resume_from_latest()
        return trainer.fit()
    finally:
        trainer.close()


def _train(store: Store, run: queries.Run, cfg: TrainConfig, replicas: Replicas, on_step,
           stop: threading.Event, agent_gone: Callable[[], bool]) -> str:
    run_id, files = run.id, RunDir(run.run_dir)
    journal = files.journal
    handler = attach_log_file(files)
    trainer = None
    trained = False
    try:
        trainer = _trainer(run, cfg, replicas, on_step=on_step, stop=stop,
                           on_artifact=lambda kind, path, step: _record_artifact(store, run_id, kind, path, step))
        restored = trainer.resume_from_latest()
        trainer.ensure_checkpoint_room()
        # points past the restored checkpoint are replayed by this run: forget them everywhere
        replay_journal(store, run_id, journal)
        truncate_journal(journal, trainer.step)
        queries.truncate_metrics(store, run_id, trainer.step)
        if restored:
            log.info("resuming run %d from %s", run_id, restored.name)
        else:
            log.info("starting run %d: %d steps, learning-rate warm-up over %d", run_id, trainer.total,
                     cfg.warmup_steps)
        if replicas.distributed:
            log.info("%d processes on %s, %d images each: global batch %d", replicas.world_size,
                     trainer.device.type, cfg.batch_size, cfg.global_batch_size)
        queries.update_run(store, run_id, total_steps=trainer.total, step=trainer.step)
        trainer.metrics = MetricLogger(store, run_id, journal)
        trained = True
        try:
            def stop_on_request(request: str) -> None:
                if not stop.is_set():
                    log.info("%s through the store: checkpointing and stopping", request)
                    stop.set()

            with Heartbeat(store, run_id, lambda: trainer.step, on_request=stop_on_request):
                outcome = trainer.fit()
        finally:
            trainer.metrics.close()
            replay_journal(store, run_id, journal)
        reason = {"finished": f"reached step {trainer.step}", "stopped": f"stopped at step {trainer.step}"}[outcome]
        current = queries.get_run(store, run_id)  # killed while lost: it stays killed
        if outcome == "stopped" and (current.exit_reason == KILL_REQUESTED or current.status == "killed"):
            outcome, reason = "killed", f"killed at step {trainer.step} (SIGTERM; it checkpointed first)"
        elif outcome == "stopped" and disrupted_pod(current):
            return hand_back_to_job(store, run_id, trainer.step, _latest_ckpt(trainer))
        queries.set_status(store, run_id, outcome, reason=reason, step=trainer.step,
                           checkpoint_path=_latest_ckpt(trainer))
        log.info("run %d %s: %s", run_id, outcome, reason)
        return outcome
    except BaseException as exc:
        if agent_gone():  # a sibling rank ended with the agent and broke a collective: end as they did
            os._exit(1)
        known = isinstance(exc, (BadInput, WorkFailed))
        reason = str(exc) if known else f"{exc.__class__.__name__}: {exc}"
        progress = dict(step=trainer.step, checkpoint_path=_latest_ckpt(trainer)) if trained else {}
        queries.set_status(store, run_id, "failed", reason=reason, **progress)
        if known:
            log.error("run %d failed: %s", run_id, exc)
        else:
            log.exception("run %d failed", run_id)
        raise
    finally:
        if trainer:
            trainer.close()
        logging.getLogger("ddpm_tui").removeHandler(handler)
        handler.close()


def _latest_ckpt(trainer: Trainer) -> str | None:
    found = ckpt.list_checkpoints(trainer.ckpt_dir)
    return str(found[-1]) if found else None


def _record_artifact(store: Store, run_id: int, kind: str, path: Path, step: int) -> None:
    try:
        queries.add_artifact(store, run_id, kind, str(path), step)
        if kind == "checkpoint":
            queries.update_run(store, run_id, checkpoint_path=str(path), step=step)
    except Exception as exc:  # the files are the truth; the index can be rebuilt
        log.warning("could not record %s artifact: %s", kind, str(exc).splitlines()[0])


RESUMABLE = ("stopped", "killed", "crashed", "failed", "queued")


def check_resumable(store: Store, run_id: int, checkpoint: int | None = None, restart: bool = False,
                    rdzv_endpoint: str | None = None) -> queries.Run:
    """The run, if it can be resumed now; nothing about it is changed when it cannot. The checkpoint
    it would continue from must load and fit its architecture, its disk must hold one more, and no
    trainer may hold its directory. With `checkpoint`, that step's checkpoint is the one: the newer
    ones are set aside (renamed *.passed-over) once every check has passed. A run that trained but
    has no checkpoint would start over from step 0: NeedsRestart, unless `restart`."""
    reconcile(store)
    run = queries.get_run(store, run_id)
    if run.status == "finished":
        raise BadInput(f"run {run.id} is finished (step {run.step}/{run.total_steps}); nothing to resume")
    if run.status == "running":
        raise BadInput(f"run {run.id} is running (pid {run.pid}); stop it before resuming")
    if run.status == "lost":
        raise BadInput(f"run {run.id} is lost: its trainer on {run.host} has been silent, not known dead (a paused "
                       "process or a network split look the same); stop or kill it, or resume it once its host "
                       "confirms it crashed")
    if not executor_for(run).on_cluster:  # torchrun over nodes meets where the user says
        rendezvous_endpoint(run, rdzv_endpoint)
    run_dir = Path(run.run_dir)
    if not run_dir.is_dir():
        raise BadInput(f"run {run.id}: run directory {run.run_dir} is missing")
    holder = trainer_holding(run_dir)
    if holder is not None:
        raise BadInput(f"run {run.id}: a trainer{f' (pid {holder})' if holder else ''} still holds {run_dir}; "
                       "stop or kill it first")
    cfg = LoadedRun.of(run).cfg
    ckpt_dir = RunDir(run_dir).checkpoints
    found = ckpt.choose_checkpoint(ckpt_dir, cfg, checkpoint)
    if found is None and run.step > 0 and not restart:
        raise NeedsRestart(f"run {run.id} has no checkpoint to continue from (it had reached step {run.step}): "
                           "resuming restarts it from step 0; confirm with --restart", run.id)
    ckpt_dir.mkdir(exist_ok=True)
    ckpt.ensure_room(ckpt_dir, found[0].stat().st_size if found else checkpoint_bytes(cfg))
    if checkpoint is not None:
        ckpt.set_aside_after(ckpt_dir, checkpoint, "passed-over")
    return run

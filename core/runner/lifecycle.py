"""Run lifecycle: launch, stop, kill, resume, delete.

queued -> running -> finished | failed | stopped | killed, and crashed when its owner is gone
without saying so, lost while its owner on another host is silent (core.runner.liveness). A run in
`running` whose trainer has not taken it over yet (started_at is empty) is stopped or killed by a
compare-and-set on that column, so exactly one of the trainer and the stop wins. A pid is signalled
only by its own host: a run trained on another host is stopped or killed by a request written to
the store, which its trainer reads with its heartbeat. This module records a run's states; its
executor (core.executors) starts, signals and submits what the states say, whichever it is.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from core.config import INT_MAX, TrainConfig
from core.errors import BadInput, WorkFailed
from core.executors import executor_for, job_state
from core.executors.base import USER_SUBMITS
from core.executors.k8s import KubernetesJob
from core.executors.local import local_executor, own_process
from core.executors.slurm import SlurmJob
from core.loaded_run import load_run
from core.locations import STORE_ENV
from core.run_dir import RunDir
from core.runner.heartbeat import HEARTBEAT_SECONDS, KILL_REQUESTED, STOP_REQUESTED
from core.runner.liveness import reconcile
from core.runner.ownership import running_fields
from core.runner.processes import process_start_time, trainer_command
from core.runner.run import RunPlan, check_resumable, make_run_dir, new_run, plan_run
from core.runner.sweeps import expand_grid, grid_axes
from core.store import LIVE_STATUSES, queries
from core.store.db import Store


def store_url_for_children(store: Store) -> str:
    """The store's URL with a relative SQLite path made absolute, so children in any cwd find it."""
    url = store.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:" and not path.startswith("file:"):
            return "sqlite:///" + str(Path(path).resolve())
    return url


def child_env(store: Store, env_extra: dict | None = None) -> dict:
    """The environment of a process started for this store: its URL in DDPM_TUI_DB."""
    return dict(os.environ, **{STORE_ENV: store_url_for_children(store)}, **(env_extra or {}))


def other_nodes_command(store: Store, run: queries.Run, rdzv_endpoint: str | None = None) -> str:
    """What a person runs on each other node of a multi-node run (the store's password masked)."""
    from core.store.db import redact

    return f"DDPM_TUI_DB='{redact(store_url_for_children(store))}' python {' '.join(trainer_command(run, rdzv_endpoint)[1:])}"


def start_process(store: Store, run_id: int, env_extra: dict | None = None):
    """Start the detached trainer of run `run_id` (already `running`, owned by this process) through
    its executor and hand the ownership over to it. Returns its process."""
    run = queries.get_run(store, run_id)
    proc = executor_for(run).submit(run, child_env(store, env_extra)).process
    queries.update_run(store, run_id, expect=("running",), match={"started_at": None}, pid=proc.pid, pgid=proc.pid,
                       pid_started=process_start_time(proc.pid))
    return proc


def start_attached(store: Store, run_id: int, rdzv_endpoint: str | None = None) -> subprocess.Popen:
    """Start the trainer of run `run_id` (already `running`, owned by this process) as a child in this
    process's session and group, so the terminal's Ctrl-C stops every rank; output goes to the run's
    stdout.log."""
    loaded = load_run(store, run_id)
    run = loaded.record
    if rdzv_endpoint and loaded.cfg.nnodes > 1:  # kept for its resume
        queries.update_run(store, run_id, executor_spec={"rdzv_endpoint": rdzv_endpoint})
    log_path = loaded.files.stdout_log
    with log_path.open("ab") as log:
        return subprocess.Popen(trainer_command(run, rdzv_endpoint), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=child_env(store))


def launch(store: Store, runs_dir: Path, cfg: TrainConfig, queue: bool = False, sweep_id: int | None = None,
           plan: RunPlan | None = None):
    """Create a run; start it detached now, or leave it `queued` for a worker. Returns the run."""
    run = new_run(store, runs_dir, cfg, status="queued" if queue else "running", sweep_id=sweep_id, plan=plan)
    if not queue:
        start_process(store, run.id)
    return queries.get_run(store, run.id)


def _check_spec_matches(cfg: TrainConfig, spec) -> None:
    if cfg.nproc != spec.gpus_per_node or cfg.nnodes != spec.nodes:
        raise BadInput(f"--nproc {cfg.nproc} --nnodes {cfg.nnodes} do not match --gpus-per-node "
                       f"{spec.gpus_per_node} --nodes {spec.nodes}")


def _hand_to_cluster(store: Store, run: queries.Run, spec: dict, undo, submit=None) -> queries.Run:
    """Submit `run` (already `running`) to its executor's cluster as `spec` (stored with it) says;
    `submit(run)`, when given, stands for the executor's submission and returns the cluster's id
    for the run. The run waits for its job with no owner process: the job's trainer takes it over
    and heartbeats. When the submission fails, `undo()` puts everything back and the error is raised."""
    queries.update_run(store, run.id, host=run.executor, pid=None, pgid=None, pid_started=None, executor_spec=spec,
                       heartbeat_at=queries.database_clock(store))
    run = queries.get_run(store, run.id)
    try:
        external_id = submit(run) if submit else executor_for(run).submit(run, child_env(store)).external_id
    except BaseException:
        undo()
        raise
    queries.update_run(store, run.id, external_id=external_id)
    return queries.get_run(store, run.id)


def submit_to_cluster(store: Store, plan: RunPlan, placement, cluster) -> queries.Run:
    """Create a run and submit it to Kubernetes as `placement` says (core.executors.k8s), through
    `cluster`; when the cluster refuses it, the run is removed again, so nothing is stored."""
    _check_spec_matches(plan.cfg, placement)
    cluster.check_namespace(placement.namespace)
    run = new_run(store, plan.runs_dir, plan.cfg, status="running", plan=plan, executor=KubernetesJob.name)
    return _hand_to_cluster(store, run, dataclasses.asdict(placement), lambda: _forget(store, run),
                            lambda fresh: KubernetesJob(cluster).submit(fresh, {}).external_id)


def reserve_on_cluster(store: Store, plan: RunPlan, placement) -> tuple[queries.Run, list[dict]]:
    """Create a run waiting for a Kubernetes job that its user submits (`launch --dry-run`), and the
    manifests of that job, named for the run, which applied as they are train it. Until they are,
    its executor says the job is not submitted (not gone)."""
    _check_spec_matches(plan.cfg, placement)
    run = new_run(store, plan.runs_dir, plan.cfg, status="running", plan=plan, executor=KubernetesJob.name)
    items = []

    def reserve(fresh: queries.Run) -> str:
        external_id, manifests = KubernetesJob.reserve(fresh)
        items.extend(manifests)
        return external_id
    run = _hand_to_cluster(store, run, {**dataclasses.asdict(placement), USER_SUBMITS: True},
                           lambda: _forget(store, run), reserve)
    return run, items


def submit_to_slurm(store: Store, plan: RunPlan, allocation) -> queries.Run:
    """Create a run and submit it as a SLURM job through submitit (core.executors.slurm); when the
    submission fails, the run is removed again."""
    _check_spec_matches(plan.cfg, allocation)
    run = new_run(store, plan.runs_dir, plan.cfg, status="running", plan=plan, executor=SlurmJob.name)
    return _hand_to_cluster(store, run, dataclasses.asdict(allocation), lambda: _forget(store, run))


def _forget(store: Store, run: queries.Run) -> None:
    queries.delete_run(store, run.id)
    shutil.rmtree(run.run_dir, ignore_errors=True)


def _resubmit(store: Store, run: queries.Run) -> queries.Run:
    """Resume a run on the cluster it ran on, asking for what it asked for before (a new job: its
    executor deletes the old one first where it is kept, saving what it would take with it)."""
    if not run.executor_spec:
        raise BadInput(f"run {run.id} ran on {run.executor} without a stored placement; launch it again")
    previous = run.status
    if not queries.set_status(store, run.id, "running", reason=f"resumed on {run.executor}", expect=(previous,),
                              **running_fields()):
        raise BadInput(f"run {run.id} changed while resuming it (now {queries.get_run(store, run.id).status}); try again")

    def undo():
        queries.set_status(store, run.id, previous, reason="resubmission failed", expect=("running",))
    spec = {key: value for key, value in run.executor_spec.items() if key != USER_SUBMITS}  # submitted by us now
    return _hand_to_cluster(store, run, spec, undo)


def settle_cluster_run(store: Store, run: queries.Run) -> str:
    """Ask a cluster run's executor about its job; a run whose job ended before its trainer took it
    over (an image that cannot be pulled, a node that failed) ends `failed`. A job not submitted yet
    (a dry run's, before its user applies it) leaves the run waiting. Returns the job's state."""
    state = job_state(run)
    if run.status == "running" and run.started_at is None and state in ("failed", "succeeded", "gone"):
        queries.set_status(store, run.id, "failed", reason=f"job {run.external_id} {state} before training started",
                           expect=("running",), match={"started_at": None})
    return state


def _running(store: Store, run_id) -> queries.Run:
    reconcile(store)
    run = queries.get_run(store, run_id)
    if run.status not in LIVE_STATUSES:
        raise BadInput(f"run {run.id} is not running (status {run.status})")
    return run


def owned_elsewhere(run: queries.Run) -> bool:
    """Whether the run's trainer (or its launcher) is a process of another host, which this host
    must never signal: the same pid here is some other process."""
    return run.host is not None and run.host != socket.gethostname()


def _request(store: Store, run: queries.Run, request: str, wait: float) -> StopResult:
    """Ask the trainer of a run on another host, through the store, to stop (or be killed): it
    reads the request with its next heartbeat, checkpoints and ends the run. Waits up to `wait` s."""
    verb = "stop" if request == STOP_REQUESTED else "kill"
    if not queries.update_run(store, run.id, expect=LIVE_STATUSES, match={"pid": run.pid}, exit_reason=request):
        return StopResult(queries.get_run(store, run.id), f"run {run.id}: changed before the {verb} request; "
                                                          f"now {queries.get_run(store, run.id).status}")
    deadline = time.time() + wait
    while time.time() < deadline and queries.get_run(store, run.id).status in LIVE_STATUSES:
        time.sleep(0.2)
    final = queries.get_run(store, run.id)
    if verb == "kill" and final.status == "lost" and queries.set_status(
            store, run.id, "killed", reason=f"killed while lost: {run.host} did not answer within {wait:g} s; a "
                                            "trainer that comes back finds it killed and stops", expect=("lost",)):
        return StopResult(queries.get_run(store, run.id), f"run {run.id}: killed (its host {run.host} is silent)")
    if final.status in LIVE_STATUSES:
        return StopResult(final, f"run {run.id}: {verb} requested through the store; its trainer on {run.host} "
                                 f"reads it within {HEARTBEAT_SECONDS:g} s, checkpoints and ends "
                                 f"{'stopped' if verb == 'stop' else 'killed'}")
    return StopResult(final, f"run {run.id}: {final.status}")


def _end_before_start(store: Store, run: queries.Run, status: str, end) -> bool:
    """End a run whose trainer has not taken it over yet; its trainer, if one is on its way, then
    finds it ended and leaves. `end(run)` is its executor's stop or kill, which signals the process
    started for the run only (never a worker that claimed it), and only on its own host. False when
    the trainer took it over first."""
    if not queries.set_status(store, run.id, status, reason=f"{status} before training started",
                              expect=LIVE_STATUSES, match={"started_at": None}):
        return False
    end(run)
    return True


@dataclass(frozen=True)
class StopResult:
    run: queries.Run
    message: str


def stop(store: Store, run_id, wait: float = 0.0) -> StopResult:
    """SIGTERM: the trainer checkpoints and records `stopped`. Optionally wait for that. A run on a
    cluster is stopped through its executor (deleting its job, whose pods get the SIGTERM)."""
    run = _running(store, run_id)
    executor = executor_for(run)
    if executor.on_cluster:  # stamped first: the trainer then knows its SIGTERM is this stop, not a preemption
        queries.update_run(store, run.id, expect=("running",), exit_reason=STOP_REQUESTED)
        executor.stop(run)
        if queries.set_status(store, run.id, "stopped", reason="stopped before training started", expect=("running",),
                              match={"started_at": None}):
            return StopResult(queries.get_run(store, run.id), f"run {run.id}: stopped before its job started")
        return StopResult(queries.get_run(store, run.id), f"run {run.id}: job {run.external_id} told to stop; its "
                                                          "trainer checkpoints, then ends stopped")
    if run.started_at is None:
        if _end_before_start(store, run, "stopped", executor.stop):
            return StopResult(queries.get_run(store, run.id), f"run {run.id}: stopped before training started")
        run = queries.get_run(store, run.id)  # its trainer took it over in the meantime
    if owned_elsewhere(run):
        return _request(store, run, STOP_REQUESTED, wait)
    if not executor.stop(run):
        reconcile(store)
        return StopResult(queries.get_run(store, run.id), f"run {run.id}: its process {run.pid} had already ended")
    _wait_for_end(run, wait)
    final = queries.get_run(store, run.id)
    if final.status == "running":
        return StopResult(final, f"run {run.id}: stop requested (SIGTERM to pid {run.pid}); it checkpoints, "
                                 "then ends stopped")
    return StopResult(final, f"run {run.id}: {final.status}")


def kill(store: Store, run_id, grace: float = 10.0) -> StopResult:
    """SIGTERM, then SIGKILL to the whole process group if it is still alive after `grace` seconds.
    Either way the run ends `killed` (a trainer that honours the SIGTERM checkpoints first). A run
    on a cluster is killed through its executor (deleting its job with no grace period)."""
    run = _running(store, run_id)
    executor = executor_for(run)
    if executor.on_cluster:
        queries.update_run(store, run.id, expect=("running",), exit_reason=KILL_REQUESTED)
        executor.kill(run)
        queries.set_status(store, run.id, "killed", reason=f"job {run.external_id} killed", expect=("running",))
        return StopResult(queries.get_run(store, run.id), f"run {run.id}: killed")
    if run.started_at is None:
        if _end_before_start(store, run, "killed", executor.kill):
            return StopResult(queries.get_run(store, run.id), f"run {run.id}: killed before training started")
        run = queries.get_run(store, run.id)  # its trainer took it over in the meantime
    if owned_elsewhere(run):
        return _request(store, run, KILL_REQUESTED, grace)
    queries.update_run(store, run.id, expect=("running",), match={"pid": run.pid}, exit_reason=KILL_REQUESTED)
    executor.stop(run)
    _wait_for_end(run, grace)
    if executor.kill(run):
        _wait_for_end(run, 5.0)
        queries.set_status(store, run.id, "killed", reason=f"killed (SIGKILL after {grace:g} s grace)",
                           expect=("running",), match={"pid": run.pid})
    final = queries.get_run(store, run.id)
    return StopResult(final, f"run {run.id}: {final.status}")


def _wait_for_end(run: queries.Run, seconds: float) -> None:
    """Wait up to `seconds` for the run's process on this host to end."""
    deadline = time.time() + seconds
    while time.time() < deadline and own_process(run):
        time.sleep(0.1)


def resume(store: Store, run_id, queue: bool = False, checkpoint: int | None = None,
           restart: bool = False) -> queries.Run:
    """Continue a stopped, killed, crashed or failed run under the same id from its last good
    checkpoint (or from `checkpoint`), detached or queued for a worker. Nothing is changed when
    it cannot be resumed. A run without a checkpoint starts over only with `restart`."""
    run = check_resumable(store, run_id, checkpoint, restart)
    if executor_for(run).on_cluster:
        if queue:
            raise BadInput(f"--queue: run {run.id} runs on {run.executor}, which queues it itself")
        return _resubmit(store, run)
    if queue:
        changed = queries.set_status(store, run.id, "queued", reason="queued for resume", expect=(run.status,))
    else:
        changed = queries.set_status(store, run.id, "running", reason="resumed", expect=(run.status,),
                                     **running_fields())
    if not changed:
        raise BadInput(f"run {run.id} changed while resuming it (now {queries.get_run(store, run.id).status}); try again")
    if not queue:
        start_process(store, run.id)
    return queries.get_run(store, run.id)


def extend(store: Store, run_id, more_steps: int) -> queries.Run:
    """Train a finished run `more_steps` further under the same id: its step budget grows and it
    resumes, detached, from its last checkpoint."""
    if not 1 <= more_steps <= INT_MAX:
        raise BadInput(f"--steps: must be between 1 and {INT_MAX}, got {more_steps}")
    reconcile(store)
    loaded = load_run(store, run_id)
    run = loaded.record
    if run.status != "finished":
        raise BadInput(f"run {run.id} is {run.status}; only a finished run is extended (resume the others)")
    if run.total_steps + more_steps > INT_MAX:
        raise BadInput(f"--steps {more_steps}: run {run.id} would train to step {run.total_steps + more_steps}, "
                       f"beyond the most a run takes ({INT_MAX}); at most {INT_MAX - run.total_steps} more")
    cfg = TrainConfig(**{**loaded.cfg.to_dict(), "max_steps": run.total_steps + more_steps,
                         "epochs": 0.0}).validate()
    total = cfg.max_steps
    changed = queries.set_status(store, run.id, "stopped", reason=f"extended to {total} steps", expect=("finished",),
                                 config=cfg.to_dict(), total_steps=total)
    if not changed:
        raise BadInput(f"run {run.id} changed while extending it (now {queries.get_run(store, run.id).status})")
    return resume(store, run.id)


def remove(store: Store, run_id) -> queries.Run:
    """Delete a run's records and its own directory (wherever the store says it is, whatever runs
    dir this command was given). The directory is moved aside first, so a failure in between
    leaves either the whole run or nothing of it."""
    reconcile(store)
    run = queries.get_run(store, run_id)
    if run.status == "running":
        raise BadInput(f"run {run.id} is running; stop or kill it first")
    run_dir = Path(run.run_dir).resolve() if run.run_dir else None
    trash = None
    if run_dir and run_dir.is_dir():
        if run_dir.name != str(run.id) or not RunDir(run_dir).config.is_file():
            raise BadInput(f"run {run.id}: {run_dir} does not look like its run directory; nothing deleted")
        trash = run_dir.with_name(f".deleting-{run.id}-{os.getpid()}")
        try:
            os.replace(run_dir, trash)
        except OSError as exc:
            raise WorkFailed(f"run {run.id}: cannot delete {run_dir} ({exc.strerror}); nothing deleted") from None
    try:
        queries.delete_run(store, run.id)
    except BaseException:
        if trash is not None:
            os.replace(trash, run_dir)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    return run


@dataclass(frozen=True)
class SweepPlan:
    name: str
    seeds: int
    axes: list
    plans: list  # RunPlan per run
    eval_on_finish: dict | None = None  # core.evaluate.planning.EvalOnFinish.spec()


def plan_sweep(runs_dir: Path, raw_values: dict, seeds: int, config_file=None, name: str = "",
               allow_large: bool = False) -> SweepPlan:
    """Expand a grid (see sweeps.expand_grid; past MAX_SWEEP_RUNS only with `allow_large`) and check
    every run as plan_run does (each dataset once); nothing is stored."""
    configs = expand_grid(raw_values, seeds, config_file, name, allow_large)
    checked_data: dict = {}
    return SweepPlan(name or "sweep", seeds, grid_axes(raw_values),
                     [plan_run(cfg, runs_dir, checked_data) for cfg in configs])


def queue_sweep(store: Store, plan: SweepPlan):
    """Queue every run of a checked sweep under one new sweep id, all or nothing: an error or an
    interrupt half-way leaves neither the sweep, nor any of its runs, nor their directories.
    Returns (sweep, runs)."""
    spec = {"axes": plan.axes, "seeds": plan.seeds, "runs": len(plan.plans)}
    if plan.eval_on_finish:
        spec["eval_on_finish"] = plan.eval_on_finish
    rows = [{"config": p.cfg.to_dict(), "status": "queued", "name": p.cfg.name, "total_steps": p.total_steps,
             "tags": p.cfg.tag, "executor": local_executor(p.cfg.world_size)} for p in plan.plans]
    return queries.create_sweep_runs(
        store, plan.name, spec, rows,
        prepare=lambda i, run: str(make_run_dir(plan.plans[i], run.id)),
        discard=lambda run: shutil.rmtree(run.run_dir, ignore_errors=True))

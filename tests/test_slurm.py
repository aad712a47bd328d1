"""The SLURM executor, through submitit, run by submitit's local executor (no SLURM here): the job
trains the run, stop reaches its trainer, its log is read from the job's output."""

import json
import os
import signal
from pathlib import Path

import pytest

from conftest import TINY, poll_until
from core.store import Store
from core.store import queries

SLURM_LOCAL = ["launch", "--executor", "slurm", "--cluster", "local", "--time", "10"]


def show(cli, run_id):
    r = cli("runs", "show", run_id, "--json")
    assert r.code == 0, r
    return json.loads(r.out)


@pytest.mark.slow
def test_a_two_process_job_trains_to_the_end_and_its_log_is_read(workdir, cli, pcam):
    r = cli(*SLURM_LOCAL, "--gpus-per-node", 2, "--data", pcam, *TINY, "--max-steps", 6, "--ckpt-every", 3)
    assert r.code == 0, r
    run_id = int(r.out)
    run = show(cli, run_id)
    assert run["executor"] == "slurm" and run["external_id"].startswith("local:")
    assert run["config"]["nproc"] == 2 and run["global_batch"] == 16
    assert run["job_state"] in ("running", "gone")  # submitit's controller, alive while the job runs
    poll_until(lambda: show(cli, run_id)["status"] != "running", timeout=180, every=0.5)
    run = show(cli, run_id)
    assert run["status"] == "finished", run["exit_reason"]
    assert run["step"] == 6 and [e["status"] for e in run["events"]] == ["running", "finished"]
    r = cli("runs", "logs", run_id, "--tail", 20)
    assert r.code == 0 and "run 1 finished: reached step 6" in r.out, r


@pytest.mark.slow
def test_stop_reaches_the_trainer_which_checkpoints_and_resume_submits_it_again(workdir, cli, pcam):
    total = 400
    run_id = int(cli(*SLURM_LOCAL, "--data", pcam, *TINY, "--max-steps", total, "--ckpt-every", 100000).out)
    store = Store("sqlite:///runs.db")
    poll_until(lambda: queries.get_run(store, run_id).started_at is not None, timeout=120)
    poll_until(lambda: queries.summaries(store, [run_id]).get(run_id, {}).get("train/loss"), timeout=120)
    r = cli("runs", "stop", run_id)
    assert r.code == 0 and f"job {show(cli, run_id)['external_id']} told to stop" in r.err, r
    poll_until(lambda: queries.get_run(store, run_id).status != "running", timeout=120)
    run = queries.get_run(store, run_id)
    assert run.status == "stopped" and run.checkpoint_path and run.step > 0, run.exit_reason
    first_job = run.external_id
    assert run.step < total, "the stop came too late to test anything"
    r = cli("runs", "resume", run_id)
    assert r.code == 0, r
    poll_until(lambda: queries.get_run(store, run_id).status != "running", timeout=180, every=0.5)
    run = queries.get_run(store, run_id)
    assert run.status == "finished" and run.step == total and run.external_id != first_job, run.exit_reason
    assert [e.status for e in queries.status_events(store, run_id)] == ["running", "stopped", "running", "finished"]


def test_bad_slurm_options_are_one_line_and_store_nothing(workdir, cli, pcam):
    for args, message in (
        (["--cluster", "lsf"], "--cluster: unknown cluster 'lsf' (choose from slurm, local)"),
        (["--cluster", "local", "--nodes", "2"], "--cluster local runs on this machine: --nodes must be 1"),
        (["--time", "0"], "--time: must be between 1 and 1000000, got 0"),
        ([], "--executor slurm: the cluster's nodes must reach the store"),
        (["--queue"], "--queue: a run for --executor slurm is queued by its cluster"),
    ):
        r = cli("launch", "--executor", "slurm", *args, "--data", pcam, *TINY)
        assert r.code == 2 and message in r.err and r.err.count("\n") == 1, r
    assert not (workdir / "runs.db").exists()



def task_of(controller: int) -> int | None:
    """The pid of the job's task under submitit's local controller (the job id)."""
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    return int(children[0]) if children else None


def final_weights(run_dir: Path):
    import torch

    checkpoint = torch.load(sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
    return checkpoint["model"]


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = [int(c) for c in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except OSError:
            children = []
        found += children
        todo += children
    return found


@pytest.fixture
def local_jobs():
    """Controllers of submitit's local jobs started by a test: ended with everything under them."""
    controllers: list[int] = []
    yield controllers
    for controller in controllers:
        for pid in [*descendants(controller), controller]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_job_warned_of_preemption_checkpoints_requeues_and_ends_as_an_uninterrupted_one(workdir, cli, pcam,
                                                                                           local_jobs):
    import torch

    options = [*SLURM_LOCAL, "--data", pcam, *TINY, "--dropout", "0", "--max-steps", 30, "--ckpt-every", 10]
    store = Store("sqlite:///runs.db")

    def launch() -> int:
        run_id = int(cli(*options).out)
        local_jobs.append(int(queries.get_run(store, run_id).external_id.split(":")[1]))
        return run_id

    straight = launch()
    poll_until(lambda: queries.get_run(store, straight).status != "running", timeout=280, every=0.5)
    assert queries.get_run(store, straight).status == "finished"

    run_id = launch()
    poll_until(lambda: queries.get_run(store, run_id).step >= 3, timeout=120)
    os.kill(poll_until(lambda: task_of(local_jobs[-1]), timeout=30), signal.SIGUSR2)  # SLURM's early warning
    poll_until(lambda: queries.get_run(store, run_id).status == "finished", timeout=280, every=0.5)
    events = queries.status_events(store, run_id)
    assert [e.status for e in events] == ["running", "stopped", "running", "finished"]
    assert events[2].reason.startswith("preempted at step") and "requeued (1 of 3)" in events[2].reason
    a, b = final_weights(workdir / "runs" / str(straight)), final_weights(workdir / "runs" / str(run_id))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "the requeued run did not continue exactly"


def test_bad_slurm_resources_are_refused(workdir, cli, pcam):
    for args, message in ((["--max-restarts", "-1"], "--max-restarts: must be between 0 and 1000, got -1"),
                          (["--cpus-per-task", "0"], "--cpus-per-task: must be between 1 and 1000000, got 0"),
                          (["--mem", "-5"], "--mem: must be between 1 and 1000000, got -5"),
                          (["--account", "a b;rm"], "--account: not a SLURM name: 'a b;rm'")):
        r = cli(*SLURM_LOCAL, *args, "--data", pcam, *TINY)
        assert r.code == 2 and message in r.err and r.err.count("\n") == 1, r
    assert not (workdir / "runs.db").exists()

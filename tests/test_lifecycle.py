"""Who owns a running run: reconciliation, one trainer per run directory, stop/kill before the
trainer starts, and failures that end a run `failed` instead of leaving it `running`."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import TINY, poll_until as wait_for
from core.runner.liveness import reconcile
from core.runner.ownership import running_fields
from core.runner.processes import pid_alive
from core.runner.run_lock import RunDirLock, trainer_holding
from core.store import Store, queries
from core.errors import BadInput
from core.runner.run import execute_run


@pytest.fixture
def store(workdir, store_url, monkeypatch):
    """The store every command of the test uses: SQLite in the working directory, then PostgreSQL."""
    monkeypatch.setenv("DDPM_TUI_DB", store_url)
    return Store(store_url)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_foreground_run_that_fails_in_the_progress_bar_ends_failed_with_its_reason(workdir, cli, pcam,
                                                                                      monkeypatch, store):
    import rich.progress

    def broken_update(self, *args, **kwargs):
        raise TypeError("unsupported format string passed to NoneType.__format__")

    monkeypatch.setattr(rich.progress.Progress, "update", broken_update)
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "5")
    assert r.code == 1
    run = queries.get_run(store, 1)
    assert run.status == "failed" and "TypeError: unsupported format string" in run.exit_reason
    assert not trainer_holding(run.run_dir), "the trainer's lock goes with it"


def test_reconcile_settles_every_run_whose_owner_is_gone(store, tmp_path):
    host = socket.gethostname()
    ids = {}
    for label, fields in {
        "never_started": dict(host=None, pid=None),  # e.g. claimed, and the claimer vanished
        "dead_pid": dict(host=host, pid=dead_pid()),
        "live_owner": running_fields(),  # this process
        "other_host_fresh": dict(host="elsewhere", pid=1, heartbeat_at=time.time()),
        "other_host_stale": dict(host="elsewhere", pid=1, heartbeat_at=time.time() - 3600),
    }.items():
        run_dir = tmp_path / label
        run_dir.mkdir()
        ids[label] = queries.create_run(store, {}, status="running", run_dir=str(run_dir), **fields).id
    crashed = set(reconcile(store))
    assert crashed == {ids["never_started"], ids["dead_pid"]}
    reasons = {k: queries.get_run(store, i).exit_reason for k, i in ids.items()}
    assert "no owner process recorded" in reasons["never_started"] and "is gone" in reasons["dead_pid"]
    # silent on another host: lost (it may be paused or cut off), not crashed
    statuses = {k: queries.get_run(store, i).status for k, i in ids.items()}
    assert statuses["other_host_stale"] == "lost" and statuses["other_host_fresh"] == statuses["live_owner"] == "running"
    assert "no heartbeat from elsewhere" in queries.status_events(store, ids["other_host_stale"])[-1].reason


def test_a_run_claimed_by_a_worker_that_died_before_starting_it_is_crashed(store, cli):
    run_id = queries.create_run(store, {}, status="queued").id
    subprocess.run([sys.executable, "-c", "import os; from core.store import Store; from core.runner.worker import "
                    "claim_next; print(claim_next(Store(os.environ['DDPM_TUI_DB']), 'w'))"], check=True,
                   capture_output=True)
    assert queries.get_run(store, run_id).status == "running"
    r = cli("runs", "stop", run_id)
    assert r.code == 2 and f"run {run_id} is not running (status crashed)" in r.err
    assert cli("runs", "rm", run_id, "--yes").code == 0


def test_runs_dir_that_is_a_file_stores_nothing(workdir, cli, pcam):
    (workdir / "afile").write_text("x")
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "2", "--runs-dir", workdir / "afile")
    assert r.code == 2 and "is a file, not a directory" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (workdir / "runs.db").exists()


def test_a_paused_run_is_never_crashed_nor_trained_twice(workdir, cli, pcam, store):
    r = cli("launch", "--data", pcam, *TINY, "--max-steps", "100000", "--ckpt-every", "5")
    run_id = int(r.out)
    run = wait_for(lambda: (lambda x: x if x.step > 0 else None)(queries.get_run(store, run_id)))
    os.kill(run.pid, signal.SIGSTOP)
    try:
        # paused far beyond the heartbeat grace period
        queries.update_run(store, run_id, heartbeat_at=time.time() - 3600)
        assert cli("runs", "list").code == 0
        assert queries.get_run(store, run_id).status == "running"
        r = cli("runs", "resume", run_id)
        assert r.code == 2 and "is running" in r.err
        # even a row that says crashed (written by an older ddpm-tui) cannot start a second trainer
        queries.set_status(store, run_id, "crashed", reason="stale heartbeat")
        r = cli("runs", "resume", run_id)
        assert r.code == 2 and f"a trainer (pid {run.pid}) still holds" in r.err
        with pytest.raises(BadInput, match="already has a live trainer"):
            with RunDirLock(run.run_dir, run_id):
                pass
        queries.set_status(store, run_id, "running", reason="test", pid=run.pid)
    finally:
        os.kill(run.pid, signal.SIGCONT)
    assert cli("runs", "stop", run_id, "--wait", "60").code == 0
    assert queries.get_run(store, run_id).status == "stopped"


def test_a_second_trainer_on_the_same_directory_is_refused(store, pcam, workdir, cli):
    assert cli("launch", "--data", pcam, *TINY, "--max-steps", "4", "--queue").code == 0
    run = queries.get_run(store, 1)
    queries.set_status(store, 1, "running", reason="test", **running_fields())
    with RunDirLock(run.run_dir, 1):
        with pytest.raises(BadInput, match="run 1 already has a live trainer"):
            execute_run(store, 1)
    assert queries.get_run(store, 1).started_at is None, "the refused trainer changed nothing"


@pytest.mark.parametrize("command,status", [("stop", "stopped"), ("kill", "killed")])
def test_stop_or_kill_right_after_launch_ends_the_run_so(workdir, cli, pcam, store, command, status):
    r = cli("launch", "--data", pcam, *TINY, "--max-steps", "100000")
    run_id = int(r.out)
    run = queries.get_run(store, run_id)
    assert run.status == "running" and run.started_at is None, "the trainer is still starting up"
    r = cli("runs", command, run_id)
    assert r.code == 0 and f"{status} before training started" in r.err
    wait_for(lambda: not pid_alive(run.pid), timeout=60, what="the trainer to end")
    wait_for(lambda: trainer_holding(run.run_dir) is None, timeout=30, what="no process of the run left")
    final = queries.get_run(store, run_id)
    assert final.status == status and final.started_at is None and final.step == 0
    assert [e.status for e in queries.status_events(store, run_id)] == ["running", status]


def test_kill_of_a_training_run_ends_it_killed_after_its_checkpoint(workdir, cli, pcam, store):
    run_id = int(cli("launch", "--data", pcam, *TINY, "--max-steps", "100000", "--ckpt-every", "5").out)
    wait_for(lambda: queries.get_run(store, run_id).step >= 3, timeout=120)
    r = cli("runs", "kill", run_id)
    assert r.code == 0
    final = queries.get_run(store, run_id)
    assert final.status == "killed", r.err
    assert final.exit_reason.startswith(f"killed at step {final.step} (SIGTERM")
    assert final.checkpoint_path and f"{final.step:08d}" in final.checkpoint_path
    assert [e.status for e in queries.status_events(store, run_id)] == ["running", "killed"]


def test_stop_of_a_claimed_run_before_its_trainer_never_signals_the_worker(workdir, cli, pcam, store):
    assert cli("launch", "--data", pcam, *TINY, "--max-steps", "4", "--queue").code == 0
    from core.runner.worker import claim_next

    assert claim_next(store, "test") == 1  # owned by this test process, as by a worker
    r = cli("runs", "stop", "1")
    assert r.code == 0 and "stopped before training started" in r.err
    assert queries.get_run(store, 1).status == "stopped"
    r = cli("runs", "resume", "1")
    assert r.code == 0
    wait_for(lambda: queries.get_run(store, 1).status == "finished", timeout=120)


def test_resume_of_a_run_without_a_checkpoint_restarts_only_when_told(tmp_path, cli, monkeypatch):
    from conftest import seed_store

    url, runs_dir = seed_store(tmp_path)  # run 2: stopped at step 40, no checkpoint
    started = []
    monkeypatch.setattr("core.runner.lifecycle.start_process", lambda store, run_id, *a: started.append(run_id))
    r = cli("--db", url, "runs", "resume", "2")
    assert r.code == 2 and r.err.strip() == ("error: run 2 has no checkpoint to continue from (it had reached step "
                                             "40): resuming restarts it from step 0; confirm with --restart")
    store = Store(url)
    assert queries.get_run(store, 2).status == "stopped" and started == []
    r = cli("--db", url, "runs", "resume", "2", "--restart")
    assert r.code == 0 and started == [2] and queries.get_run(store, 2).status == "running"


def test_extend_trains_a_finished_run_further_under_the_same_id(workdir, cli, pcam, store):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "3", "--ckpt-every", "3").code == 0
    r = cli("runs", "extend", "1", "--steps", "2")
    assert r.code == 0 and r.out.strip() == "1" and "now to step 5" in r.err
    wait_for(lambda: queries.get_run(store, 1).status == "finished", timeout=120)
    run = queries.get_run(store, 1)
    assert (run.step, run.total_steps, run.config["max_steps"]) == (5, 5, 5)
    assert [(e.status, e.reason) for e in queries.status_events(store, 1)][-3:] == [
        ("stopped", "extended to 5 steps"), ("running", "resumed"), ("finished", "reached step 5")]
    steps, _, _ = queries.metric_series(store, 1, "train/loss")
    assert steps == [1, 2, 3, 4, 5]
    for args, message in ((["1", "--steps", "0"], "--steps: must be between 1 and 2147483647, got 0"),
                          (["2", "--steps", "5"], "no run with id 2")):
        r = cli("runs", "extend", *args)
        assert r.code == 2 and message in r.err, r


def test_heartbeats_and_staleness_use_the_database_clock_not_this_hosts(store_url, monkeypatch):
    from core.runner.heartbeat import Heartbeat

    store = Store(store_url)
    assert abs(queries.database_time(store) - time.time()) < 2
    run = queries.create_run(store, {}, status="running", name="far", host="gpu-box-7", pid=1)
    Heartbeat(store, run.id, lambda: 12).beat()
    beat = queries.get_run(store, run.id)
    assert beat.step == 12 and abs(beat.heartbeat_at - queries.database_time(store)) < 2
    monkeypatch.setattr(time, "time", lambda: 10_000_000_000.0)  # this host's clock is far off
    assert reconcile(store) == [] and queries.get_run(store, run.id).status == "running"
    queries.update_run(store, run.id, heartbeat_at=queries.database_time(store) - 600)
    assert reconcile(store) == [] and queries.get_run(store, run.id).status == "lost"
    assert queries.status_events(store, run.id)[-1].reason.startswith("no heartbeat from gpu-box-7 for 600 s")

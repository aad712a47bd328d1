"""Runs owned by another host, on one store: a pid is signalled only by its own host, control from
elsewhere is a request through the store, and a silent run is `lost`, never `crashed`, until its
own host says otherwise. The second host is a process with its own hostname (`unshare -u`)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TINY, poll_until
from core.runner.heartbeat import KILL_REQUESTED, STOP_REQUESTED, Heartbeat
from core.runner.liveness import reconcile
from core.store import queries

OTHER_HOST = "gpu-box-b"


@pytest.fixture
def bystander():
    """A process of this host that no command may signal."""
    proc = subprocess.Popen(["sleep", "120"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def remote_run(store, tmp_path, pid: int, **fields) -> int:
    run_dir = tmp_path / f"remote-{pid}"
    run_dir.mkdir()
    values = dict(host=OTHER_HOST, pid=pid, pgid=pid, started_at=time.time(),
                  heartbeat_at=queries.database_time(store), run_dir=str(run_dir))
    return queries.create_run(store, {}, status="running", **{**values, **fields}).id


def test_stop_and_kill_of_a_run_on_another_host_signal_nothing_here(store, cli, tmp_path, bystander):
    run_id = remote_run(store, tmp_path, bystander.pid)
    r = cli("runs", "stop", run_id)
    assert r.code == 0 and "stop requested through the store" in r.err and OTHER_HOST in r.err, r
    time.sleep(0.2)
    assert bystander.poll() is None, "a pid of this host that merely shares the remote run's number was signalled"
    assert queries.get_run(store, run_id).exit_reason == STOP_REQUESTED

    r = cli("runs", "kill", run_id, "--grace", "0.5")
    assert r.code == 0 and "kill requested through the store" in r.err, r
    assert bystander.poll() is None and queries.get_run(store, run_id).status == "running"


def test_a_silent_remote_run_is_lost_comes_back_and_a_lost_one_that_never_answers_can_be_killed(store, cli, tmp_path,
                                                                                              bystander):
    run_id = remote_run(store, tmp_path, bystander.pid)
    queries.update_run(store, run_id, heartbeat_at=queries.database_time(store) - 600)
    assert reconcile(store) == [] and queries.get_run(store, run_id).status == "lost"
    r = cli("runs", "resume", run_id)
    assert r.code == 2 and "is lost" in r.err, r
    # its heartbeat comes back (the paused process continued): running again, from the beat itself
    Heartbeat(store, run_id, lambda: 7).beat()
    assert queries.get_run(store, run_id).status == "running"

    queries.update_run(store, run_id, heartbeat_at=queries.database_time(store) - 600)
    reconcile(store)
    r = cli("runs", "kill", run_id, "--grace", "0.3")
    assert r.code == 0 and f"killed (its host {OTHER_HOST} is silent)" in r.err, r
    assert queries.get_run(store, run_id).status == "killed" and bystander.poll() is None
    requests = []
    Heartbeat(store, run_id, lambda: 8, on_request=requests.append).beat()
    assert requests == [KILL_REQUESTED], "a trainer that comes back finds its run killed and stops"


def test_a_lost_run_of_this_host_is_judged_by_its_pid(store, tmp_path, bystander):
    here = socket.gethostname()
    alive = remote_run(store, tmp_path, bystander.pid, host=here)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = remote_run(store, tmp_path, dead.pid, host=here)
    for run_id in (alive, gone):
        queries.set_status(store, run_id, "lost", reason="marked by another host")
    assert reconcile(store) == [gone]
    assert queries.get_run(store, alive).status == "running" and queries.get_run(store, gone).status == "crashed"


def test_the_heartbeat_hands_a_request_to_its_trainer(store, tmp_path):
    run_id = remote_run(store, tmp_path, os.getpid(), host=socket.gethostname())
    requests = []
    beat = Heartbeat(store, run_id, lambda: 3, on_request=requests.append)
    beat.beat()
    assert requests == []
    queries.update_run(store, run_id, exit_reason=STOP_REQUESTED)
    beat.beat()
    assert requests == [STOP_REQUESTED]


def training(store, proc):
    """Run 1 once it has taken a step (None before), failing at once if its process ended."""
    assert proc.poll() is None, proc.stderr.read().decode()
    found = [r for r in queries.list_runs(store) if r.id == 1 and r.step > 0]
    return found[0] if found else None


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a second hostname")
def test_a_trainer_on_another_host_paused_then_lost_comes_back_and_is_stopped_from_here(store, cli, pcam, workdir):
    """Host B trains; host A (this test) sees it lost while it is paused, running when it continues,
    and stops it through the store: B's trainer checkpoints and ends stopped, no signal from A."""
    probe = subprocess.run(["unshare", "-u", "hostname", OTHER_HOST], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -u is not permitted here: {probe.stderr.decode().strip()}")
    env = dict(os.environ, PYTHONPATH=str(ROOT), DDPM_TUI_CACHE=str(workdir / "cache"))
    train = [sys.executable, "-m", "ddpm_tui", "train", "--data", str(pcam), *TINY, "--max-steps", "100000",
             "--ckpt-every", "5"]
    host_b = subprocess.Popen(["unshare", "-u", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh", *train],
                              cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        run = poll_until(lambda: training(store, host_b), timeout=120)
        assert run.host == OTHER_HOST
        os.kill(host_b.pid, signal.SIGSTOP)
        # paused far past the grace period (the heartbeat is aged instead of waiting minutes)
        queries.update_run(store, 1, heartbeat_at=queries.database_time(store) - 150)
        assert cli("runs", "list").code == 0
        assert queries.get_run(store, 1).status == "lost"
        os.kill(host_b.pid, signal.SIGCONT)
        poll_until(lambda: queries.get_run(store, 1).status == "running", timeout=30)
        r = cli("runs", "stop", "1", "--wait", "60")
        assert r.code == 0 and "run 1: stopped" in r.err, r
        assert host_b.wait(timeout=60) == 0
        log = (workdir / "runs" / "1" / "train.log").read_text()
        assert "stop requested through the store: checkpointing and stopping" in log
        assert "received SIGTERM" not in log
        events = [e.status for e in queries.status_events(store, 1)]
        assert events[-3:] == ["lost", "running", "stopped"]
    finally:
        if host_b.poll() is None:
            os.killpg(host_b.pid, signal.SIGCONT)
            os.killpg(host_b.pid, signal.SIGKILL)
            host_b.wait()

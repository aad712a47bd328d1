"""A run's local pid is signalled only while it names the process the run recorded: on its own host,
started when the run says it did. A pid freed by the run's process and given to a later one is
left alone, and the run is judged by the liveness rules as if its process were gone."""

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import poll_until
from core.runner import processes
from core.runner.liveness import reconcile
from core.runner.ownership import owner_fields
from core.runner.processes import process_start_time, same_process
from core.store import queries


@pytest.fixture
def bystander():
    """A live process of this host, in its own process group."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def local_run(store, tmp_path, pid: int, pid_started: float | None) -> int:
    """A run trained on this host by `pid`, as its trainer records it once it has taken the run over."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return queries.create_run(store, {}, status="running", executor="local", host=socket.gethostname(), pid=pid,
                              pgid=pid, pid_started=pid_started, started_at=time.time(),
                              heartbeat_at=time.time(), run_dir=str(run_dir)).id


def test_the_start_time_tells_a_process_from_a_later_one_with_its_pid(bystander):
    started = process_start_time(bystander.pid)
    assert started is not None and abs(started - time.time()) < 60
    assert process_start_time(bystander.pid) == started, "read twice, the same"
    assert same_process(bystander.pid, started)
    assert not same_process(bystander.pid, started - 3600), "same pid, another process"
    assert same_process(bystander.pid, None), "no start time recorded (an older run): the pid alone"
    assert owner_fields()["pid_started"] == process_start_time(os.getpid())


def test_where_start_times_cannot_be_read_a_live_pid_is_taken_as_the_process(bystander, monkeypatch, tmp_path):
    monkeypatch.setattr(processes, "PROC", tmp_path / "no-proc")
    assert process_start_time(bystander.pid) is None
    assert same_process(bystander.pid, 12345.0)


@pytest.mark.parametrize("verb", ["stop", "kill"])
def test_a_pid_now_naming_another_process_is_not_signalled(store, cli, tmp_path, bystander, verb):
    run_id = local_run(store, tmp_path, bystander.pid, process_start_time(bystander.pid) - 3600)
    r = cli("runs", verb, run_id, *(["--grace", "0.5"] if verb == "kill" else []))
    assert r.code == 2 and f"run {run_id} is not running (status crashed)" in r.err, r
    time.sleep(0.2)
    assert bystander.poll() is None, "a process that merely got the run's old pid was signalled"
    run = queries.get_run(store, run_id)
    assert run.status == "crashed" and "later process" in queries.status_events(store, run_id)[-1].reason


@pytest.mark.parametrize("verb", ["stop", "kill"])
def test_the_process_the_run_recorded_is_signalled(store, cli, tmp_path, bystander, verb):
    run_id = local_run(store, tmp_path, bystander.pid, process_start_time(bystander.pid))
    assert reconcile(store) == [] and queries.get_run(store, run_id).status == "running"
    r = cli("runs", verb, run_id, *(["--grace", "5"] if verb == "kill" else []))
    assert r.code == 0, r
    assert poll_until(lambda: bystander.poll() is not None, timeout=10)
    assert bystander.returncode == -signal.SIGTERM, "first the SIGTERM a trainer checkpoints on"

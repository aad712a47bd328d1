"""Exit codes and last lines of commands ended by a signal: an interrupted command says where it
stopped, and a run whose processes were killed ends `crashed` with exit 1, never "running", exit 0.
Every process a test starts is killed in its `finally`."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from conftest import TINY, ddpm_subprocess, free_port, poll_until, wait_for_checkpoint, write_pcam
from core.store import Store, queries
from test_distributed import OPTS, parent_pid, rank_pid


def end_all(proc, cache) -> None:
    """SIGKILL the command's process group and any training rank it left (each rank has a session
    of its own)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for rank in (0, 1):
        try:
            os.kill(rank_pid(cache, rank), signal.SIGKILL)
        except (AssertionError, ProcessLookupError):
            pass


def test_ctrl_c_on_classifier_train_says_where_it_stopped_and_stores_nothing(tmp_path):
    pcam = write_pcam(tmp_path / "pcam", {"train": 32, "valid": 8, "test": 8})
    proc = ddpm_subprocess(["classifier", "train", "--data", pcam, "--max-steps", "1000000", "--batch-size", "8",
                            "--device", "cpu"], tmp_path, start_new_session=True)
    try:
        poll_until(lambda: (tmp_path / "runs").exists() or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(2)  # into the training loop
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        err = proc.stderr.read()
        assert re.search(r"classifier training interrupted at step \d+/1000000; nothing stored", err), err
        assert "aborted" not in err
        assert queries.classifiers(Store(f"sqlite:///{tmp_path / 'runs.db'}")) == []
    finally:
        end_all(proc, tmp_path / "cache")


@pytest.mark.slow
def test_train_whose_torchrun_agent_was_sigkilled_exits_1_and_says_crashed(tmp_path):
    pcam = write_pcam(tmp_path / "pcam")
    proc = ddpm_subprocess(["train", "--data", pcam, *OPTS, "--batch-size", "4", "--nproc", "2", "--max-steps",
                            "100000", "--ckpt-every", "2"], tmp_path, start_new_session=True)
    try:
        wait_for_checkpoint(proc, tmp_path / "runs" / "1" / "checkpoints" / "ckpt-00000002.pt", timeout=240)
        os.kill(parent_pid(rank_pid(tmp_path / "cache", 1)), signal.SIGKILL)  # the torchrun agent alone
        assert proc.wait(timeout=120) == 1
        err = proc.stderr.read()
        assert "run 1 crashed" in err and "torchrun exited with -9" in err, err
        assert "running at step" not in err
        assert queries.get_run(Store(f"sqlite:///{tmp_path / 'runs.db'}"), 1).status == "crashed"
    finally:
        end_all(proc, tmp_path / "cache")


@pytest.mark.slow
def test_ctrl_c_while_waiting_for_other_nodes_stops_the_run_with_a_clean_line(tmp_path):
    pcam = write_pcam(tmp_path / "pcam")
    proc = ddpm_subprocess(["train", "--data", pcam, *TINY, "--nnodes", "2", "--nproc", "1", "--max-steps", "20",
                            "--rdzv-endpoint", f"127.0.0.1:{free_port()}"], tmp_path, start_new_session=True)
    try:
        log = tmp_path / "runs" / "1" / "stdout.log"
        poll_until(lambda: log.exists() or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(5)  # the agent is at the rendezvous, waiting for the second node
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 0
        err = proc.stderr.read()
        assert "run 1 stopped at step 0/20" in err and "resume with: ddpm-tui train --resume 1" in err, err
        assert "error" not in err and "Traceback" not in err, err
        run = queries.get_run(Store(f"sqlite:///{tmp_path / 'runs.db'}"), 1)
        assert (run.status, run.exit_reason) == ("stopped", "interrupted (Ctrl-C) before training started")
    finally:
        end_all(proc, tmp_path / "cache")


@pytest.mark.parametrize("run_id", ["\u0663", "0_1", "+1"])
def test_a_runs_own_entry_point_takes_plain_digits_only(run_id, tmp_path, monkeypatch, capsys):
    from core.runner.execute import main

    monkeypatch.setenv("DDPM_TUI_DB", f"sqlite:///{tmp_path / 'runs.db'}")
    assert main([run_id]) == 2
    assert "usage:" in capsys.readouterr().err
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize("args", [["--gpus", "abc"], ["--gpus", ""], ["--slots", "0"], ["--poll", "nan"]])
def test_the_detached_worker_refuses_what_the_worker_command_refuses(args, tmp_path, monkeypatch, capsys):
    from core.runner.worker import main

    monkeypatch.setenv("DDPM_TUI_DB", f"sqlite:///{tmp_path / 'runs.db'}")
    assert main([*args, "--until-empty"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {args[0]}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs.db").exists()

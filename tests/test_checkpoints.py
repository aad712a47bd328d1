"""Checkpoints as a run's lifeline: pruning never loses the newest good one, a resume that cannot
work changes nothing, a full disk says so, and what belongs to a step is written before its
checkpoint."""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY
from core.errors import WorkFailed
from core.store import Store, queries
from core.train import checkpoint as ckpt


@pytest.fixture
def store(workdir):
    return Store("sqlite:///runs.db")


def ckpt_dir(workdir, run_id=1) -> Path:
    return workdir / "runs" / str(run_id) / "checkpoints"


def snapshot(store, run_id):
    run = queries.get_run(store, run_id)
    return (run.status, run.step, run.checkpoint_path, run.exit_reason, len(queries.status_events(store, run_id)),
            queries.summaries(store, [run_id]).get(run_id, {}).get("train/loss", {}).get("count"))


def test_pruning_keeps_the_checkpoint_just_written_despite_a_garbage_later_name(workdir, cli, pcam, store,
                                                                              monkeypatch):
    real_save = ckpt.save_atomic

    def save_and_litter(state, path):
        real_save(state, path)
        if state["step"] == 2:  # something writes a garbage file with a later step into the folder
            (Path(path).parent / "ckpt-99999999.pt").write_bytes(b"\x00not a checkpoint")

    monkeypatch.setattr(ckpt, "save_atomic", save_and_litter)
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "6", "--ckpt-every", "2", "--keep-ckpts", "1")
    assert r.code == 0 and "run 1 finished at step 6/6" in r.err, r
    path, state = ckpt.load_latest_good(ckpt_dir(workdir))
    assert state["step"] == 6 and path.name == "ckpt-00000006.pt"
    assert sorted(p.name for p in ckpt_dir(workdir).iterdir()) == ["ckpt-00000006.pt", "ckpt-99999999.pt"]
    assert cli("sample", "1", "--n", "1", "--steps", "2", "--out", workdir / "s.png").code == 0


def stopped_run(cli, pcam, store, *extra):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "4", "--ckpt-every", "2", *extra).code == 0
    queries.set_status(store, 1, "stopped", reason="stopped at step 4 (test)")


def test_a_resume_that_cannot_load_changes_nothing(workdir, cli, pcam, store):
    stopped_run(cli, pcam, store)
    for p in ckpt_dir(workdir).iterdir():
        p.write_bytes(b"\x00garbage")
    before = snapshot(store, 1)
    for args in (["runs", "resume", "1"], ["train", "--resume", "1"]):
        r = cli(*args)
        assert r.code == 2 and "no loadable checkpoint (all 2 are corrupt)" in r.err, r
        assert len(r.err.strip().splitlines()) == 1
        assert snapshot(store, 1) == before


def test_a_newer_checkpoint_of_another_architecture_is_named_and_the_good_one_offered(workdir, cli, pcam, store):
    stopped_run(cli, pcam, store)
    assert cli("train", "--data", pcam, *TINY, "--dim", "24", "--max-steps", "2").code == 0
    shutil.copy(ckpt_dir(workdir, 2) / "ckpt-00000002.pt", ckpt_dir(workdir) / "ckpt-00000009.pt")
    before = snapshot(store, 1)
    r = cli("runs", "resume", "1")
    assert r.code == 2 and "ckpt-00000009.pt: checkpoint of another architecture: dim=24 (run has 16)" in r.err
    assert "the newest checkpoint that fits is ckpt-00000004.pt: use it with --checkpoint 4" in r.err
    assert snapshot(store, 1) == before
    r = cli("train", "--resume", "1", "--checkpoint", "7")
    assert r.code == 2 and "no ckpt-00000007.pt" in r.err and "steps with checkpoints: 2, 4, 9" in r.err
    r = cli("train", "--resume", "1", "--checkpoint", "4")
    assert r.code == 0 and "run 1 finished at step 4/4" in r.err, r
    assert (ckpt_dir(workdir) / "ckpt-00000009.pt.passed-over").exists()
    assert [p.name for p in ckpt.list_checkpoints(ckpt_dir(workdir))] == ["ckpt-00000002.pt", "ckpt-00000004.pt"]


REAL_SAVE = torch.save


def full_disk_save(limit_bytes):
    """torch.save as it behaves on a full disk: the file's write fails with ENOSPC and torch
    reports a short write ('unexpected pos') with the OSError as context."""

    class FullFile:
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, data):
            if self.written + len(data) > limit_bytes:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def save(obj, fh, *args, **kwargs):
        return REAL_SAVE(obj, FullFile(fh), *args, **kwargs)

    return save


def test_save_on_a_full_disk_says_so_and_leaves_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt.torch, "save", full_disk_save(1000))
    target = ckpt.checkpoint_path(tmp_path, 5)
    with pytest.raises(WorkFailed, match=r"disk full: could not write ckpt-00000005.pt in .* MiB free\); the "
                                         r"previous checkpoints are kept"):
        ckpt.save_atomic({"model": {"w": torch.zeros(10_000)}, "step": 5}, target)
    assert list(tmp_path.iterdir()) == []


def test_a_run_on_a_full_disk_fails_clearly_and_resuming_while_full_changes_nothing(workdir, cli, pcam, store,
                                                                                     monkeypatch):
    def save_then_fill(obj, fh, *args, **kwargs):
        if obj["step"] >= 4:
            return full_disk_save(1000)(obj, fh, *args, **kwargs)
        return REAL_SAVE(obj, fh, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save_then_fill)
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "6", "--ckpt-every", "2")
    assert r.code == 1 and len(r.err.strip().splitlines()) == 2, r  # "run 1: <dir>" and the error
    assert "error: disk full: could not write ckpt-00000004.pt" in r.err
    run = queries.get_run(store, 1)
    assert run.status == "failed" and run.exit_reason.startswith("disk full") and run.step == 4
    assert [p.name for p in ckpt_dir(workdir).iterdir()] == ["ckpt-00000002.pt"]

    journal = (workdir / "runs" / "1" / "metrics.jsonl").read_text()
    before = snapshot(store, 1)
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    for args in (["train", "--resume", "1"], ["runs", "resume", "1"]):
        r = cli(*args)
        assert r.code == 1 and "disk full: could not write a checkpoint" in r.err, r
        assert snapshot(store, 1) == before
        assert (workdir / "runs" / "1" / "metrics.jsonl").read_text() == journal


KILL_AFTER_CHECKPOINT = """
import os, signal, sys
from core.train.trainer import Trainer
original = Trainer.save_checkpoint
def save_then_die(self):
    path = original(self)
    if self.step == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
Trainer.save_checkpoint = save_then_die
from ddpm_tui.cli import main
main(sys.argv[1:])
"""


def test_a_kill_right_after_a_checkpoint_keeps_that_steps_validation_point(workdir, pcam, cli, store):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DDPM_TUI_CACHE=str(workdir / "cache"))
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_CHECKPOINT, "train", "--data", str(pcam), *TINY,
                           "--max-steps", "8", "--ckpt-every", "4", "--eval-every", "4"], cwd=workdir, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    r = cli("train", "--resume", "1")
    assert r.code == 0 and "run 1 finished at step 8/8" in r.err, r
    assert queries.metric_series(store, 1, "val/loss")[0] == [4, 8]


def test_a_damaged_metrics_journal_line_is_skipped_dropped_and_said_in_the_log(workdir, cli, pcam, store):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "4", "--ckpt-every", "2").code == 0
    journal = workdir / "runs" / "1" / "metrics.jsonl"
    lines = journal.read_text().splitlines()
    damaged = '{"s": 2, "t": 1.5}'  # a line without its values ("m")
    journal.write_text("\n".join([lines[0], damaged, *lines[1:]]) + "\n")
    (ckpt_dir(workdir) / "ckpt-00000004.pt").unlink()
    queries.set_status(store, 1, "stopped", reason="test: stopped at step 2", step=2)
    r = cli("train", "--resume", "1")
    assert r.code == 0, r
    assert queries.get_run(store, 1).status == "finished"
    assert damaged not in journal.read_text(), "the damaged line is dropped when the run resumes"
    log = (workdir / "runs" / "1" / "train.log").read_text()
    assert f"{journal}: skipped 1 damaged line(s) (the first is line 2)" in log
    steps, _, _ = queries.metric_series(store, 1, "train/loss")
    assert steps == [1, 2, 3, 4]

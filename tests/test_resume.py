"""Exact resume: N steps straight == k steps, SIGKILL after the checkpoint at k, resume to N."""

import signal

import pytest
import torch

from conftest import ddpm_subprocess, wait_for_checkpoint
from core.store import Store
from core.store import queries

# attention and dropout on, so every source of randomness and every layer kind is exercised
OPTS = ["--dim", "16", "--dim-mults", "1,2", "--res-blocks", "1", "--attention", "full", "--batch-size", "8",
        "--timesteps", "100", "--warmup-steps", "3", "--device", "cpu", "--dropout", "0.1", "--seed", "3"]
N, K = 40, 10


def final_weights(run_dir):
    last = sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1]
    state = torch.load(last, weights_only=True)
    assert state["step"] == N
    return state


@pytest.mark.slow
def test_sigkill_and_resume_gives_bit_identical_weights(tmp_path, pcam):
    common = ["--data", pcam, *OPTS, "--max-steps", N, "--ckpt-every", K, "--keep-ckpts", 10]
    straight = ddpm_subprocess(["train", *common], tmp_path)
    assert straight.wait(timeout=240) == 0, straight.stderr.read()

    victim = ddpm_subprocess(["train", *common], tmp_path)
    wait_for_checkpoint(victim, tmp_path / "runs" / "2" / "checkpoints" / f"ckpt-{K:08d}.pt")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = sorted((tmp_path / "runs" / "2" / "checkpoints").glob("ckpt-*.pt"))
    assert f"ckpt-{N:08d}.pt" not in {p.name for p in killed_at}, "the kill came too late to test anything"

    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    assert queries.get_run(store, 2).status == "running"  # nobody said goodbye: resume finds out
    resumed = ddpm_subprocess(["train", "--resume", 2], tmp_path)
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read()

    a, b = final_weights(tmp_path / "runs" / "1"), final_weights(tmp_path / "runs" / "2")
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    assert a["data_position"] == b["data_position"] == N * 8
    steps, losses_b, _ = queries.metric_series(store, 2, "train/loss")
    assert steps == list(range(1, N + 1))
    assert losses_b == queries.metric_series(store, 1, "train/loss")[1]
    events = [e.status for e in queries.status_events(store, 2)]
    assert events == ["running", "crashed", "running", "finished"]

"""--init-weights: a new run starts from given network weights (the demo's shipped ones, a run's
checkpoint); a file that is missing, foreign or of another architecture is refused before anything
is stored."""

import pytest
import torch

from conftest import TINY
from core.config import DEMO_PRESET, TrainConfig
from core.store import Store, queries
from core.train import checkpoint as ckpt
from core.train.trainer import Trainer

TINY_CFG = dict(dim=16, dim_mults="1,2", res_blocks=1, attention="none", batch_size=8, timesteps=50,
                warmup_steps=2, device="cpu")


def test_a_new_run_starts_from_the_given_weights_and_its_ema_too(workdir, cli, pcam):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "2", "--ckpt-every", "2").code == 0
    source = sorted((workdir / "runs").glob("*/checkpoints/ckpt-*.pt"))[-1]
    cfg = TrainConfig(data=str(pcam), init_weights=str(source), **TINY_CFG)
    trainer = Trainer(cfg, workdir / "fresh", pcam)
    expected = torch.load(source, weights_only=True)["ema"]
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, expected[name])
        torch.testing.assert_close(trainer.ema.state_dict()[name], expected[name])
    trainer.close()
    assert TrainConfig(data=str(pcam), **TINY_CFG).init_weights == ""  # the default: a fresh network


def test_the_shipped_demo_weights_fit_the_demo_preset():
    weights = ckpt.read_initial_weights(TrainConfig(**DEMO_PRESET, init_weights="demo"))
    assert weights and ckpt.DEMO_WEIGHTS.stat().st_size < 8 * 2**20
    stored = torch.load(ckpt.DEMO_WEIGHTS, weights_only=True)
    assert stored["step"] > 0 and stored["made_by"].startswith("benchmarks/train_demo_weights.py")


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "missing.pt", "no such file"),
    (lambda d: (d / "junk.pt").write_bytes(b"not torch") and d / "junk.pt", "not readable weights"),
    (lambda d: torch.save({"model": {}}, d / "no-ema.pt") or d / "no-ema.pt", "holds no 'ema' weights"),
])
def test_unusable_weights_are_refused_before_a_run_is_stored(workdir, cli, pcam, make, message):
    path = make(workdir)
    r = cli("train", "--data", pcam, *TINY, "--max-steps", "2", "--init-weights", path)
    assert r.code == 2 and f"--init-weights {path}: {message}" in r.err, r
    assert queries.list_runs(Store("sqlite:///runs.db")) == []


def test_weights_of_another_architecture_are_refused(workdir, cli, pcam):
    assert cli("train", "--data", pcam, *TINY, "--max-steps", "2", "--ckpt-every", "2").code == 0
    source = sorted((workdir / "runs").glob("*/checkpoints/ckpt-*.pt"))[-1]
    r = cli("train", "--data", pcam, *TINY, "--dim", "32", "--max-steps", "2", "--init-weights", source)
    assert r.code == 2 and "made for another network" in r.err and "train with the architecture" in r.err, r
    assert len(queries.list_runs(Store("sqlite:///runs.db"))) == 1

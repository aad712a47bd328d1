"""The trainer's speed options (issue 22): multi-tensor EMA and AdamW, bf16 on CPUs that compute it
natively, one host sync per step; each must leave what is trained and resumed the same."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from core.config import TrainConfig, demo_config
from core.device import training_precision
from core.errors import WorkFailed
from core.model import build_unet
from core.train import trainer as trainer_module
from core.train.trainer import Trainer, ema_update, make_optimizer

SMALL = dict(image_size=32, dim=16, dim_mults="1,2", res_blocks=1, attention="linear", batch_size=4,
             timesteps=50, warmup_steps=2, device="cpu", dropout=0.1, seed=5, sample_every=0, eval_every=0)


def small_config(pcam, **changes) -> TrainConfig:
    return TrainConfig(data=str(pcam), **{**SMALL, **changes}).validate()


def test_foreach_ema_update_equals_the_per_parameter_loop():
    cfg = TrainConfig(dim=16, dim_mults="1,2", res_blocks=1, attention="full").validate()
    torch.manual_seed(0)
    model = build_unet(cfg)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    expected = copy.deepcopy(ema)
    with torch.no_grad():  # the update as it was written before: one lerp_ per parameter
        for e, p in zip(expected.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - 0.97)
    ema_update(ema, model, 0.97)
    for (name, got), want in zip(ema.named_parameters(), expected.parameters()):
        assert torch.equal(got, want), name
    assert not torch.equal(next(ema.parameters()), next(model.parameters())), "the EMA must lag the model"


@pytest.mark.parametrize("requested, device, native, expected", [
    ("bf16", "cpu", True, "bf16"),
    ("bf16", "cpu", False, "fp32"),
    ("fp16", "cpu", True, "fp32"),
    ("fp32", "cpu", True, "fp32"),
    ("bf16", "cuda", False, "bf16"),
    ("fp16", "cuda", False, "fp16"),
    ("auto", "cpu", True, "bf16"),
    ("auto", "cpu", False, "fp32"),
    ("auto", "cuda", True, "bf16"),
    ("auto", "cuda", False, "fp32"),
])
def test_training_precision_uses_bf16_on_a_cpu_only_where_it_is_native(requested, device, native, expected):
    assert training_precision(requested, torch.device(device), native) == expected


def test_the_demo_from_its_weights_trains_in_bf16_where_native_and_from_scratch_in_fp32():
    assert demo_config(300).precision == "auto" and demo_config(300, from_scratch=True).precision == "fp32"


@pytest.mark.parametrize("precision, native, warned", [("bf16", True, False), ("bf16", False, True),
                                                      ("auto", True, False), ("auto", False, False)])
def test_only_an_asked_for_precision_warns_when_the_cpu_cannot_give_it(pcam, tmp_path, monkeypatch, caplog,
                                                                        precision, native, warned):
    monkeypatch.setattr(trainer_module, "has_native_bf16", lambda device: native)
    with caplog.at_level("INFO", logger=trainer_module.log.name):
        trainer = Trainer(small_config(pcam, precision=precision), tmp_path / "run", pcam)
    trainer.close()
    assert trainer.precision == ("bf16" if native else "fp32")
    assert any(r.levelname == "WARNING" and "training in fp32" in r.getMessage() for r in caplog.records) == warned


@pytest.mark.parametrize("native", [True, False])
def test_trainer_asks_the_cpu_probe_before_training_in_bf16(pcam, tmp_path, monkeypatch, native):
    monkeypatch.setattr(trainer_module, "has_native_bf16", lambda device: native)
    trainer = Trainer(small_config(pcam, precision="bf16"), tmp_path / "run", pcam)
    try:
        assert trainer.precision == ("bf16" if native else "fp32")
        with trainer.autocast():
            assert torch.is_autocast_enabled("cpu") == native
    finally:
        trainer.close()


def test_cpu_optimizer_uses_multi_tensor_kernels():
    model = torch.nn.Linear(3, 3)
    opt = make_optimizer(model, TrainConfig().validate(), torch.device("cpu"))
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]


def final_state(trainer: Trainer) -> dict:
    return {"model": trainer.model.state_dict(), "ema": trainer.ema.state_dict()}


def test_bf16_cpu_training_resumes_exactly(pcam, tmp_path, monkeypatch):
    """Straight to step 6 == stopped at 3, then resumed in a new Trainer to 6 (bf16 autocast on)."""
    monkeypatch.setattr(trainer_module, "has_native_bf16", lambda device: True)
    cfg = small_config(pcam, precision="bf16", max_steps=6, ckpt_every=3)
    straight = Trainer(cfg, tmp_path / "straight", pcam)
    assert straight.precision == "bf16" and straight.fit() == "finished"
    straight.close()

    stop = threading.Event()
    first = Trainer(cfg, tmp_path / "resumed", pcam, stop=stop,
                    on_step=lambda stats: stats.step == 3 and stop.set())
    assert first.fit() == "stopped" and first.step == 3
    first.close()
    second = Trainer(cfg, tmp_path / "resumed", pcam)
    assert second.resume_from_latest() is not None and second.step == 3
    assert second.fit() == "finished"
    second.close()

    a, b = final_state(straight), final_state(second)
    for part in a:
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"


def test_nonfinite_losses_are_counted_skipped_and_stop_the_run(pcam, tmp_path):
    trainer = Trainer(small_config(pcam, max_steps=20, max_nonfinite=3), tmp_path / "run", pcam)
    real_loss = trainer.diffusion.training_loss
    nan_steps = {2, 5, 6, 7}  # 1-based: one lone bad step, then three in a row

    def sometimes_nan(*args, **kwargs):
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if trainer.step + 1 in nan_steps else loss

    trainer.diffusion.training_loss = sometimes_nan
    weights = {}
    trainer.on_step = lambda stats: weights.setdefault(stats.step, copy.deepcopy(trainer.model.state_dict()))
    with pytest.raises(WorkFailed, match="not finite for 3 steps in a row at step 7"):
        trainer.fit()
    trainer.close()
    assert trainer.nonfinite_total == 4
    for key, value in weights[1].items():  # a skipped step leaves the weights as they were
        assert torch.equal(weights[2][key], value), key
    assert all(torch.isfinite(v).all() for v in weights[6].values())
    assert any(not torch.equal(weights[3][k], weights[2][k]) for k in weights[2]), "a good step must train"

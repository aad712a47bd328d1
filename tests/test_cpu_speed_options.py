"""The trainer's speed options (issue 22): multi-tensor EMA and AdamW, bf16 on CPUs that compute it
natively, one host sync per step; each must leave what is trained and resumed the same."""

from __future__ import annotations

import copy
import threading
import time

import pytest
import torch

from core import compilation
from core.compilation import compiles
from core.config import TrainConfig, build_config, config_from_dict, demo_config
from core.device import training_precision
from core.errors import WorkFailed
from core.model import build_unet
from core.train import trainer as trainer_module
from core.train.trainer import Trainer, ema_update, make_optimizer

from conftest import TINY

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
])
def test_training_precision_uses_bf16_on_a_cpu_only_where_it_is_native(requested, device, native, expected):
    assert training_precision(requested, torch.device(device), native) == expected


@pytest.mark.parametrize("device, native, from_weights, expected", [
    ("cuda", True, False, "bf16"),  # the default on a GPU that has bf16
    ("cuda", False, False, "fp32"),
    ("cpu", True, True, "bf16"),  # continuing trained weights: measured to give the same samples
    ("cpu", True, False, "fp32"),  # a fresh network on a CPU: bf16 not shown to train as well
    ("cpu", False, True, "fp32"),
])
def test_auto_precision_is_bf16_where_it_was_measured_to_train_as_well(device, native, from_weights, expected):
    assert training_precision("auto", torch.device(device), native, from_weights) == expected


def test_the_default_precision_is_auto():
    assert TrainConfig().precision == "auto"


@pytest.mark.parametrize("from_scratch, expected", [(False, "bf16"), (True, "fp32")])
def test_the_demo_from_its_weights_trains_in_bf16_where_native_and_from_scratch_in_fp32(
        pcam, tmp_path, monkeypatch, from_scratch, expected):
    monkeypatch.setattr(trainer_module, "has_native_bf16", lambda device: True)
    monkeypatch.setattr(trainer_module.ckpt, "read_initial_weights", lambda cfg: build_unet(cfg).state_dict())
    cfg = demo_config(300, from_scratch=from_scratch)
    trainer = Trainer(TrainConfig(**{**cfg.to_dict(), "data": str(pcam), "device": "cpu"}), tmp_path / "run", pcam)
    trainer.close()
    assert trainer.precision == expected


@pytest.mark.parametrize("precision, native, warned, expected", [
    ("bf16", True, False, "bf16"), ("bf16", False, True, "fp32"), ("auto", True, False, "fp32"),
    ("auto", False, False, "fp32")])
def test_only_an_asked_for_precision_warns_when_the_cpu_cannot_give_it(pcam, tmp_path, monkeypatch, caplog,
                                                                        precision, native, warned, expected):
    monkeypatch.setattr(trainer_module, "has_native_bf16", lambda device: native)
    with caplog.at_level("INFO", logger=trainer_module.log.name):
        trainer = Trainer(small_config(pcam, precision=precision), tmp_path / "run", pcam)
    trainer.close()
    assert trainer.precision == expected
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


@pytest.mark.parametrize("choice, device, deterministic, expected", [
    ("auto", "cuda", False, True), ("auto", "cpu", False, False), ("auto", "cuda", True, False),
    ("on", "cpu", False, True), ("on", "cuda", True, True), ("off", "cuda", False, False), ("off", "cpu", False, False),
])
def test_auto_compiles_on_cuda_only_and_not_a_deterministic_run(choice, device, deterministic, expected):
    assert compiles(choice, torch.device(device), deterministic) is expected


def test_runs_stored_when_compile_was_a_switch_keep_what_they_trained_with(tmp_path):
    assert TrainConfig().compile == "auto"
    assert config_from_dict({"compile": False}).compile == "off"
    assert config_from_dict({"compile": True}).compile == "on"
    (tmp_path / "c.toml").write_text("compile = true\n")
    assert build_config({}, tmp_path / "c.toml").compile == "on"
    assert build_config({"compile": "off"}).compile == "off"


def test_compile_kernels_are_cached_in_this_tools_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(compilation.CACHE_ENV, raising=False)
    monkeypatch.setenv("DDPM_TUI_CACHE", str(tmp_path))
    assert compilation.compile_cache() == tmp_path / "torch-compile"
    monkeypatch.setenv(compilation.CACHE_ENV, str(tmp_path / "mine"))
    assert compilation.compile_cache() == tmp_path / "mine"
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv(compilation.CACHE_ENV, default_cache_dir())  # what torch writes there itself
    assert compilation.compile_cache() == tmp_path / "torch-compile"


def test_a_compiled_run_reports_its_first_step_and_keeps_it_out_of_the_rate(pcam, tmp_path, monkeypatch, caplog):
    """The trainer compiles the network it trains through (the step's forward), not the weights it
    saves; the first step's compile time is logged and left out of img/s. torch.compile is replaced
    by a wrapper that takes 0.5 s at its first call, as a compile would."""
    compiled = []

    class SlowFirstCall(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.calls = net, 0

        def forward(self, *args):
            self.calls += 1
            if self.calls == 1:
                time.sleep(0.5)
            return self.net(*args)

    def fake_compile(net, mode):
        compiled.append((net, mode))
        return SlowFirstCall(net)

    monkeypatch.setattr(compilation.torch, "compile", fake_compile)
    monkeypatch.setenv("DDPM_TUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(compilation.CACHE_ENV, raising=False)  # restored after: compile_network sets it
    rates = []
    trainer = Trainer(small_config(pcam, compile="on", max_steps=3), tmp_path / "run", pcam,
                      on_step=lambda stats: rates.append(stats.img_per_s))
    with caplog.at_level("INFO", logger=trainer_module.log.name):
        assert trainer.fit() == "finished"
    trainer.close()
    assert compiled == [(trainer.model, compilation.COMPILE_MODE)] and trainer.net.calls == 3
    assert list(trainer.state_dict()["model"]) == list(build_unet(trainer.cfg).state_dict())  # not the wrapper's
    messages = [r.getMessage() for r in caplog.records]
    first = [m for m in messages if "the first step took" in m]
    assert len(first) == 1 and str(tmp_path / "cache" / "torch-compile") in first[0]
    assert messages.index(first[0]) > messages.index(f"torch.compile (mode {compilation.COMPILE_MODE}): "
                                                     "compiling the network at the first step")
    assert float(first[0].split("took ")[1].split(" s")[0]) >= 0.5
    assert rates[0] == 0.0 and all(r > 4 / 0.5 for r in rates[1:]), rates  # 4 images a step, no 0.5 s in it


def test_auto_does_not_compile_on_a_cpu(pcam, tmp_path, monkeypatch):
    monkeypatch.setattr(compilation.torch, "compile", lambda *a, **k: pytest.fail("compiled on a CPU"))
    trainer = Trainer(small_config(pcam, compile="auto"), tmp_path / "run", pcam)
    trainer.close()
    assert trainer.net is trainer.model and not trainer.compiled


@pytest.mark.slow
def test_compiled_training_resumes_exactly(pcam, tmp_path, monkeypatch):
    """torch.compile for real (Inductor's CPU kernels): straight to step 4 == stopped at 2 and
    resumed in a new Trainer, which compiles again (from the cache) to 4."""
    monkeypatch.setenv("DDPM_TUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(compilation.CACHE_ENV, raising=False)
    cfg = small_config(pcam, compile="on", max_steps=4, ckpt_every=2, attention="none", dropout=0.0, dim_mults="1")
    straight = Trainer(cfg, tmp_path / "straight", pcam)
    assert straight.fit() == "finished"
    straight.close()
    stop = threading.Event()
    first = Trainer(cfg, tmp_path / "resumed", pcam, stop=stop, on_step=lambda stats: stats.step == 2 and stop.set())
    assert first.fit() == "stopped" and first.step == 2
    first.close()
    second = Trainer(cfg, tmp_path / "resumed", pcam)
    assert second.resume_from_latest() is not None and second.fit() == "finished"
    second.close()
    a, b = final_state(straight), final_state(second)
    assert list(a["model"]) == list(build_unet(cfg).state_dict())  # no compiled wrapper's prefixes
    for part in a:
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"


@pytest.mark.parametrize("from_scratch", [False, True])
def test_the_demo_is_not_compiled_even_on_a_gpu(from_scratch):
    assert not compiles(demo_config(300, from_scratch).compile, torch.device("cuda"))


@pytest.mark.parametrize("choice, told", [("on", True), ("auto", False)])
def test_train_says_before_the_first_step_that_it_compiles(workdir, cli, pcam, monkeypatch, choice, told):
    """The first compiled step is silent for a minute or more; `train` says why before it starts."""
    monkeypatch.setattr(compilation.torch, "compile", lambda net, mode: net)  # the wiring, not a real compile
    monkeypatch.delenv(compilation.CACHE_ENV, raising=False)
    result = cli("train", "--data", pcam, *TINY, "--max-steps", "2", "--sample-every", "0", "--compile", choice)
    assert result.code == 0, result
    line = [text for text in result.err.splitlines() if "compiles the U-Net at the first step" in text]
    assert bool(line) == told, result.err
    if told:
        assert str(workdir / "cache" / "torch-compile") in line[0] and "--compile off" in line[0]

"""U-Net shapes over every configuration axis, and its input checks."""

import dataclasses
import itertools

import pytest
import torch

from core.config import TrainConfig
from core.errors import BadInput
from core.model import UNet, build_unet, sinusoidal_embedding


@pytest.mark.parametrize("attention,conditional,size,mults", [
    *itertools.product(["none", "linear", "full"], [False, True], [32], ["1,2", "1,2,4,8"]),
    ("full", False, 64, "1,2,2,2"), ("linear", True, 96, "1,2,4"), ("none", False, 96, "1"),
])
def test_output_shape_matches_input(attention, conditional, size, mults):
    levels = [size // 2**i for i in range(len(mults.split(",")))]
    cfg = TrainConfig(image_size=size, dim=16, dim_mults=mults, res_blocks=1, attention=attention,
                      attn_resolutions=",".join(map(str, levels[1:] or levels)), conditional=conditional).validate()
    net = build_unet(cfg)
    x = torch.randn(2, 3, size, size)
    t = torch.tensor([0, 999])
    y = torch.tensor([0, 2]) if conditional else None  # 2 = the null class
    out = net(x, t, y)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.float().pow(2).mean().backward()


def test_the_factory_builds_the_network_and_the_process_a_config_describes():
    import numpy as np

    from core.diffusion import make_betas
    from core.factory import create_model_and_diffusion

    cfg = TrainConfig(image_size=32, dim=16, dim_mults="1,2", res_blocks=1, attention="none", conditional=True,
                      schedule="sigmoid", timesteps=50, objective="x0", loss="huber").validate()
    net, diffusion = create_model_and_diffusion(cfg)
    assert isinstance(net, UNet) and net.num_classes == 2
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in build_unet(cfg).parameters())
    assert diffusion.num_timesteps == 50 and diffusion.objective == "x0" and diffusion.loss_type == "huber"
    assert np.allclose(diffusion.np["betas"], make_betas("sigmoid", 50))


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_every_objective_and_loss_trains_a_step(objective, loss):
    from core.diffusion import GaussianDiffusion, make_betas

    net = UNet(32, dim=16, dim_mults=(1, 2), res_blocks=1, attention="none")
    d = GaussianDiffusion(make_betas("sigmoid", 50), objective, loss)
    value = d.training_loss(lambda x, t: net(x, t), torch.rand(2, 3, 32, 32) * 2 - 1)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)


def test_res_blocks_add_parameters_and_channel_widths_follow_dim_mults():
    small = UNet(32, dim=16, dim_mults=(1, 2), res_blocks=1, attention="none")
    deep = UNet(32, dim=16, dim_mults=(1, 2), res_blocks=3, attention="none")
    assert sum(p.numel() for p in deep.parameters()) > sum(p.numel() for p in small.parameters())

    def widths(levels):  # (input, output) channels of each level's first block
        return [(level[0].conv1.in_channels, level[0].conv2.out_channels) for level in levels]

    net = UNet(32, dim=16, dim_mults=(1, 2, 4), attention="none")
    # down blocks keep the width they receive; the downsampling widens to dim * mult
    assert widths(net.down) == [(16, 16), (16, 16), (32, 32)]
    assert (net.mid1.conv1.in_channels, net.mid2.conv2.out_channels) == (32, 64)
    # up blocks run at dim * mult on the input concatenated with a down block's output
    assert widths(net.up) == [(96, 64), (48, 32), (32, 16)]


def test_image_size_must_divide():
    with pytest.raises(BadInput, match="not divisible by 2\\^\\(len\\(dim_mults\\)-1\\) = 64"):
        TrainConfig(image_size=32, dim_mults="1,2,4,8,16,32,64").validate()
    with pytest.raises(BadInput, match="--image-size 96 is not divisible"):
        TrainConfig(image_size=96, dim_mults="1,2,2,2,2,2,2").validate()
    with pytest.raises(BadInput, match="--attn-resolutions: 12 px is not a U-Net level"):
        TrainConfig(image_size=32, attn_resolutions="12").validate()


def test_sinusoidal_embedding_distinguishes_timesteps():
    e = sinusoidal_embedding(torch.tensor([0, 1, 500]), 32)
    assert e.shape == (3, 32)
    assert not torch.allclose(e[0], e[1]) and e[0, :16].eq(1).all()


def test_conditional_embedding_changes_output_and_unconditional_ignores_labels():
    torch.manual_seed(0)
    net = UNet(32, dim=16, dim_mults=(1, 2), res_blocks=1, attention="none", num_classes=2)
    for p in net.parameters():  # zero-initialised output layers would hide the difference
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([10])
    assert not torch.allclose(net(x, t, torch.tensor([0])), net(x, t, torch.tensor([1])))
    assert torch.allclose(net(x, t, None), net(x, t, torch.tensor([2])))


def test_auto_attention_resolutions_follow_image_size():
    assert TrainConfig(image_size=32, dim_mults="1,2,4").validate().attn_resolutions_tuple == (16, 8)
    assert TrainConfig(image_size=96, dim_mults="1,2,4").validate().attn_resolutions_tuple == (24,)
    assert TrainConfig(attention="none").validate().attn_resolutions_tuple == ()


def test_embedding_projection_is_not_affine():
    """A SiLU comes before each block's embedding projection, so the time MLP's last linear layer
    and the projection do not collapse into one linear map (improved-diffusion, lucidrains)."""
    from core.model import ResBlock

    torch.manual_seed(0)
    proj = ResBlock(8, 8, 16, 0.0).emb
    a, b = torch.randn(1, 16), torch.randn(1, 16)
    affine_gap = proj(a) + proj(b) - proj(torch.zeros(1, 16)) - proj(a + b)
    assert affine_gap.abs().max() > 1e-3


@pytest.mark.parametrize("channels", [8, 56, 168, 96, 200, 1000])
def test_attention_heads_divide_the_channels(channels):
    from core.model import FullAttention, LinearAttention, attention_heads

    heads = attention_heads(channels)
    assert channels % heads == 0 and 1 <= heads <= max(1, channels // 32)
    for kind in (FullAttention, LinearAttention):
        x = torch.randn(2, channels, 4, 4)
        assert kind(channels)(x).shape == x.shape


@pytest.mark.parametrize("attention,conditional,mults,res_blocks,size,dim", [
    ("none", False, "1,2", 1, 32, 16), ("full", True, "1,2,4", 2, 32, 32), ("linear", False, "1,3", 2, 32, 56),
    ("full", False, "1,2,2,4", 3, 96, 32), ("linear", True, "1", 1, 64, 24),
])
def test_memory_estimate_counts_exactly_the_parameters_of_the_model(attention, conditional, mults, res_blocks,
                                                                    size, dim):
    from core.model import count_parameters
    from core.train.resources import parameter_count

    cfg = TrainConfig(attention=attention, conditional=conditional, dim_mults=mults, res_blocks=res_blocks,
                      image_size=size, dim=dim).validate()
    assert parameter_count(cfg) == count_parameters(build_unet(cfg))


MEASURE = """
import torch
from core.config import TrainConfig
from core.diffusion import GaussianDiffusion, make_betas
from core.model import build_unet
from core.train.resources import training_memory
from core.train.trainer import make_optimizer

def status_kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

torch.set_num_threads(1)
cfg = TrainConfig(batch_size=16, dim=32, dim_mults="1,2,2", attention="full").validate()
model, ema = build_unet(cfg), build_unet(cfg)
opt = make_optimizer(model, cfg, torch.device("cpu"))  # the trainer's, multi-tensor temporaries included
diffusion = GaussianDiffusion(make_betas("cosine", 1000))
x = torch.randn(16, 3, 32, 32)
before = status_kib("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) from here
for _ in range(2):
    diffusion.training_loss(lambda a, t: model(a, t), x).backward()
    opt.step()
    opt.zero_grad()
print((status_kib("VmHWM") - before) * 1024, training_memory(cfg).total)
"""


def test_memory_estimate_is_within_a_factor_of_two_of_a_measured_training_step():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True).stdout
    measured, estimate = map(int, out.split())
    assert 0.5 < estimate / measured < 2, (measured, estimate)


def test_checkpoints_of_the_older_block_layout_are_named_as_such(tmp_path):
    from core.train import checkpoint as ckpt

    cfg = TrainConfig(dim=16, dim_mults="1,2", attention="none").validate()
    with pytest.raises(BadInput, match=r"model version 1 \(this ddpm-tui builds version 2\)"):
        ckpt.check_architecture(tmp_path / "ckpt-00000001.pt", {"config": cfg.to_dict()}, cfg)


def test_largest_batch_is_the_largest_whose_estimate_fits():
    from core.train.resources import largest_batch, training_memory

    cfg = TrainConfig(image_size=96, dim=64, dim_mults="1,2,4,8", attention="linear", batch_size=64).validate()
    available = 139 * 2**30
    largest = largest_batch(cfg, available)
    fits = lambda b: training_memory(dataclasses.replace(cfg, batch_size=b)).total <= available  # noqa: E731
    assert largest > 64 and fits(largest) and not fits(largest + 1)
    assert largest_batch(cfg, training_memory(dataclasses.replace(cfg, batch_size=1)).parameter_bytes) == 0


def test_a_config_that_does_not_fit_is_refused_with_the_batch_that_would(monkeypatch):
    from core.train import resources

    cfg = TrainConfig(batch_size=4096).validate()
    one = resources.training_memory(dataclasses.replace(cfg, batch_size=1))
    monkeypatch.setattr(resources, "host_memory_available", lambda: one.parameter_bytes + 100 * one.activation_bytes)
    with pytest.raises(BadInput, match=r"--batch-size 4096: .*\(--batch-size 100 fits; or lower --batch-size"):
        resources.check_training_fits(cfg, torch.device("cpu"))


def test_a_gpu_with_room_for_twice_the_batch_is_told_which_batch_fits(monkeypatch):
    from core.train import resources

    cfg = TrainConfig(batch_size=64).validate()
    one = resources.training_memory(dataclasses.replace(cfg, batch_size=1))
    free = {"room": one.parameter_bytes + 1000 * one.activation_bytes}
    monkeypatch.setattr(resources, "device_memory_available", lambda device: (free["room"], "GPU X has"))
    advice = resources.batch_advice(cfg, torch.device("cuda"))
    assert "room for --batch-size 1000" in advice and "GPU X has" in advice
    free["room"] = one.parameter_bytes + 127 * one.activation_bytes  # less than twice 64: nothing to say
    assert resources.batch_advice(cfg, torch.device("cuda")) is None
    assert resources.batch_advice(cfg, torch.device("cpu")) is None

"""One place where a training configuration becomes its network and its diffusion process (as
improved-diffusion's script_util does), so that training, inference and the benchmarks build the
same pair from the same TrainConfig."""

from __future__ import annotations

from core.config import TrainConfig
from core.diffusion import GaussianDiffusion, make_betas
from core.model import UNet, build_unet


def create_diffusion(cfg: TrainConfig) -> GaussianDiffusion:
    """The diffusion process of a config: its noise schedule over its timesteps, objective and loss."""
    return GaussianDiffusion(make_betas(cfg.schedule, cfg.timesteps), cfg.objective, cfg.loss)


def create_model_and_diffusion(cfg: TrainConfig) -> tuple[UNet, GaussianDiffusion]:
    """(a freshly initialised U-Net, its diffusion process) for a config."""
    return build_unet(cfg), create_diffusion(cfg)

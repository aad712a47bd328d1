"""Gaussian diffusion, independent of any network: schedules, forward process, losses, samplers."""

from core.diffusion.process import GaussianDiffusion
from core.diffusion.schedules import make_betas

__all__ = ["GaussianDiffusion", "make_betas"]

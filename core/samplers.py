"""The sampler registry: every reverse-process sampler by name, with what a face needs to offer it
(a description, its default number of steps, whether --eta applies) and one way to run it.
Every list of sampler names (the checks of sample and eval, their --help) comes from SAMPLERS.

The solvers' maths lives in core.diffusion.sampling. It is imported when a sampler first runs, not
here, so that the command line can list the samplers without loading torch."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Iterator

from core.errors import BadInput


@dataclass(frozen=True)
class Sampler:
    name: str
    description: str
    solver: str  # the generator function's name in core.diffusion.sampling
    default_steps: int | None  # None: the full chain of T steps
    uses_eta: bool = False
    respaced: bool = False  # a Markov chain that fewer steps respace (DDPM), rather than an ODE/implicit solver

    def steps_for(self, num_timesteps: int) -> int:
        """The number of steps this sampler takes when none is given, for a T-step diffusion."""
        return num_timesteps if self.default_steps is None else min(self.default_steps, num_timesteps)

    def default_steps_text(self) -> str:
        """Its default steps in words, for --help."""
        return "the full chain T" if self.default_steps is None else str(self.default_steps)

    def sample(self, diffusion, model_fn: Callable, shape, steps: int, generator=None, device="cpu",
               eta: float = 0.0, clip: bool = True) -> Iterator:
        """The chain from fresh noise: yields (t, x_t after the step, predicted x_0) per step, the
        last x_t being the sample. `eta` is passed only to samplers it applies to."""
        solver = getattr(importlib.import_module("core.diffusion.sampling"), self.solver)
        extra = {"eta": eta} if self.uses_eta else {}
        return solver(diffusion, model_fn, shape, steps=steps, generator=generator, device=device, clip=clip, **extra)

    def describe(self, steps: int, num_timesteps: int, eta: float) -> str:
        """Which chain drew a set of samples, e.g. "ddim: 50 of 1000 steps, eta 0"."""
        if self.respaced:
            if steps == num_timesteps:
                return f"{self.name}: the full chain of {num_timesteps} steps"
            return f"{self.name}: respaced to {steps} of {num_timesteps} steps"
        return f"{self.name}: {steps} of {num_timesteps} steps" + (f", eta {eta:g}" if self.uses_eta else "")


SAMPLERS: dict[str, Sampler] = {s.name: s for s in (
    Sampler("ddpm", "ancestral sampling (Ho et al. 2020), respaced when fewer steps are asked",
            "ddpm_sample", default_steps=None, respaced=True),
    Sampler("ddim", "DDIM (Song et al. 2021); eta 0 is deterministic", "ddim_sample", default_steps=50,
            uses_eta=True),
    Sampler("dpm++", "DPM-Solver++(2M) (Lu et al. 2022), a second-order ODE solver for few steps",
            # 50: as many network passes as DDIM's default and 1.4x nearer the ODE's solution on the
            # trained demo network, where 20 steps land only 10% nearer than DDIM-20 (BENCHMARKS.md)
            "dpmpp_2m_sample", default_steps=50),
)}


def sampler_named(name: str) -> Sampler:
    """The registered sampler called `name`; BadInput naming --sampler and the choices otherwise."""
    if name not in SAMPLERS:
        raise BadInput(f"--sampler: unknown value {name!r} (choose from {', '.join(SAMPLERS)})")
    return SAMPLERS[name]


def sampler_choices() -> str:
    """The names for --help: "ddpm|ddim|dpm++"."""
    return "|".join(SAMPLERS)


def default_steps_help() -> str:
    """Each sampler's default steps for --help: "ddpm the full chain T, ddim 50, dpm++ 20"."""
    return ", ".join(f"{s.name} {s.default_steps_text()}" for s in SAMPLERS.values())

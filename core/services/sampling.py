"""Drawing samples from a run: into image files, or into a labelled synthetic dataset."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from core.services.session import Session


@dataclass(frozen=True)
class SynthJob:
    """A synthetic set being drawn in a detached process (it outlives the TUI, as training does)."""

    pid: int
    out: Path
    log: Path


class SamplingUseCases(Session):
    def sample(self, run_id: int | str, out: Path, n: int = 16, steps: int | None = 50, checkpoint: int | None = None,
               device: str = "auto", **options):
        """Samples of a run's EMA weights in a PNG grid at `out` (and the other files `options`
        ask for: core.sample.sample_run's gif, sampler, eta, guidance, class_name, seed, scale,
        gif_show, on_step, say); `steps` None is the sampler's own default."""
        from core.sample import sample_run
        return sample_run(self.store, run_id, out, n=n, steps=steps, device=device, checkpoint=checkpoint, **options)

    def plan_synth(self, run_id: int | str, out: Path, n: int, **options):
        """A checked synthetic-set request (core.synthetic.plan_synth: classes, sampler, steps,
        guidance, seed, checkpoint)."""
        from core.synthetic import plan_synth
        return plan_synth(self.store, run_id, out, n, **options)

    def synthesize(self, plan, device: str = "auto", on_progress=None, say=None) -> dict:
        """Draw a planned synthetic set into its folder, resuming what a killed job left; its manifest.
        `say` gets the lines worth showing on the way."""
        from core.synthetic import synthesize
        return synthesize(self.store, plan, device=device, on_progress=on_progress, say=say)

    def start_synth(self, run_id: int | str, n: int, checkpoint: int | None = None) -> SynthJob:
        """Check a synthetic set of n patches of the run (into its folder synthetic/<time>-n<N>),
        then draw it in a detached process; `--data OUT` trains on it once it is whole."""
        from core.loaded_run import load_run
        from core.runner.lifecycle import child_env
        from core.runner.processes import spawn_detached
        from core.synthetic import job_command, plan_synth

        loaded = load_run(self.store, run_id)
        run = loaded.record
        out = loaded.files.synthetic / f"{time.strftime('%Y%m%d-%H%M%S')}-n{n}"
        plan = plan_synth(self.store, run.id, out, n, checkpoint=checkpoint)
        log = out.with_name(out.name + ".log")
        process = spawn_detached(job_command(plan.run_id, out, n, checkpoint), log, env=child_env(self.store))
        return SynthJob(process.pid, out, log)

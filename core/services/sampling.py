"""Drawing samples from a run: into image files, or into a labelled synthetic dataset."""

from __future__ import annotations

from pathlib import Path

from core.services.session import Session


class SamplingUseCases(Session):
    def sample(self, run_id: int | str, out: Path, n: int = 16, steps: int | None = 50, checkpoint: int | None = None,
               device: str = "auto", **options):
        """Samples of a run's EMA weights in a PNG grid at `out` (and the other files `options`
        ask for: core.sample.sample_run's gif, sampler, eta, guidance, class_name, seed, scale,
        gif_show, on_step); `steps` None is the sampler's own default."""
        from core.sample import sample_run
        return sample_run(self.store, run_id, out, n=n, steps=steps, device=device, checkpoint=checkpoint, **options)

    def plan_synth(self, run_id: int | str, out: Path, n: int, **options):
        """A checked synthetic-set request (core.synthetic.plan_synth: classes, sampler, steps,
        guidance, seed, checkpoint)."""
        from core.synthetic import plan_synth
        return plan_synth(self.store, run_id, out, n, **options)

    def synthesize(self, plan, device: str = "auto", on_progress=None) -> dict:
        """Draw a planned synthetic set into its folder, resuming what a killed job left; its manifest."""
        from core.synthetic import synthesize
        return synthesize(self.store, plan, device=device, on_progress=on_progress)

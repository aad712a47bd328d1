"""Drawing samples from a run into image files."""

from __future__ import annotations

from pathlib import Path

from core.services.session import Session


class SamplingUseCases(Session):
    def sample(self, run_id: int, out: Path, n: int = 16, steps: int = 50, checkpoint: int | None = None):
        from core.sample import sample_run
        return sample_run(self.store, run_id, out, n=n, steps=steps, device="auto", checkpoint=checkpoint)

"""The blind test: generated patches and real ones shown without labels, and the stored results."""

from __future__ import annotations

from core.errors import BadInput
from core.services.session import Session
from core.services.views import BlindTest
from core.store import queries


class BlindUseCases(Session):
    def blind_tests(self, run_id: int | None = None) -> list[BlindTest]:
        return queries.blind_tests(self.store, run_id)

    def add_blind_test(self, run_id: int, mode: str, n: int, correct: int, p_value: float, answers: dict) -> int:
        return queries.add_blind_test(self.store, run_id, mode, n, correct, p_value, answers).id

    def blind_trials(self, run_id: int, mode: str, n: int, seed: int, steps: int = 50) -> tuple[list[str], list]:
        """(the true answers, the images) of a blind test. Class mode: ceil(n/2) generated patches
        of each class, shuffled; the answer is each one's class. Real-vs-generated: n pairs of a
        generated patch and a real one (of the same class for a conditional run), the generated one
        on side a or b at random; the answer is that side."""
        import math

        from core.blind import CLASS_MODE, CLASS_NAMES, class_trials, pair_sides

        if mode == CLASS_MODE:
            per_class = math.ceil(n / 2)
            made = {label: self.blind_generate(run_id, per_class, seed + label, class_label=label, steps=steps)
                    for label in (0, 1)}
            order = class_trials(per_class, seed)
            return [CLASS_NAMES[label] for label, _ in order], [made[label][i] for label, i in order]
        conditional = bool(self.run(run_id).config.get("conditional"))
        generated = self.blind_generate(run_id, n, seed, class_label=None, steps=steps)
        # a conditional net alternates the classes; pair each sample with a real one of its class
        real = self.blind_real(run_id, [i % 2 if conditional else None for i in range(n)], seed)
        truths = pair_sides(n, seed)
        return truths, [(generated[i], real[i]) if side == "a" else (real[i], generated[i])
                        for i, side in enumerate(truths)]

    def blind_generate(self, run_id: int, n: int, seed: int, class_label: int | None = None,
                       steps: int = 50):
        """n generated patches, uint8 (n, S, S, 3), from the run's EMA weights (DDIM, `steps` steps).
        class_label 0/1 needs a conditional run; None alternates the classes of a conditional run."""
        import torch

        from core.inference import load_run_model
        from core.generation import generate

        net, diffusion, cfg, _, run = load_run_model(self.store, run_id, device="auto")
        if class_label is not None and not cfg.conditional:
            raise BadInput(f"run {run.id} is not class-conditional (trained on {cfg.classes}); "
                           "the class test needs a --conditional run")
        with torch.inference_mode():
            return generate(net, diffusion, n, cfg.image_size, "ddim", min(steps, cfg.timesteps), 0.0,
                            class_label, seed, next(net.parameters()).device).images

    def blind_real(self, run_id: int, labels: list[int | None], seed: int):
        """Real test-split patches of the run's dataset, one per entry of `labels` (a PCam label,
        or None for any of the run's classes), prepared as the run saw them (centre crop or resize
        to its image size): uint8 (n, S, S, 3)."""
        import numpy as np

        from core.data import selected_indices
        from core.data.prepared import open_run_split, prepare
        from core.loaded_run import load_run

        loaded = load_run(self.store, run_id)
        cfg = loaded.cfg
        source = open_run_split(cfg, loaded.record.run_dir, "test")
        try:
            rng = np.random.default_rng(seed)
            allowed = selected_indices(source, cfg.classes)
            by_label = {lab: allowed[source.labels[allowed] == lab] for lab in (0, 1)}
            picked = []
            for lab in labels:
                pool = allowed if lab is None or not len(by_label[lab]) else by_label[lab]
                picked.append(int(rng.choice(pool)))
            patches = np.stack([source.read(i, i + 1)[0] for i in picked])
        finally:
            source.close()
        return prepare(patches, cfg)

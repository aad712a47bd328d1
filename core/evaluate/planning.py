"""Checking an evaluation request before anything is computed: the metrics asked for (core.evaluate.metrics),
the held-out split and n, the sampler, the checkpoint, and a PCam classifier that never saw the split."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from core.config import SEED_MAX, TrainConfig
from core.data.prepared import count_of_classes, open_run_split, split_labels
from core.errors import BadInput
from core.evaluate.classifier import read_training_record, seen_in
from core.evaluate.defaults import DEFAULT_EVAL_N, EVAL_SAMPLER, EVAL_STEPS, UTILITY_STEPS
from core.evaluate.metrics import REQUESTS
from core.generation import network_passes
from core.labels import LABEL_NAMES
from core.loaded_run import load_run
from core.samplers import sampler_named
from core.store import queries
from core.store.db import Store
from core.train import checkpoint as ckpt

SPLITS = ("test", "valid")  # held out: the training split would measure memorisation, not generalisation


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(m.strip() for m in str(text).split(",") if m.strip()))
    unknown = [m for m in names if m not in REQUESTS]
    if not names or unknown:
        raise BadInput(f"--metrics: unknown metric {unknown[0] if unknown else text!r} (choose from {', '.join(REQUESTS)})")
    return names


def check_nll_timesteps(k: int | None, cfg: TrainConfig, whose: str, flag: str = "--nll-timesteps") -> None:
    """K timesteps of the bound's estimate are at most the T the run diffuses over: more would
    silently compute the exact bound instead of what was asked for."""
    if k is not None and k > cfg.timesteps:
        raise BadInput(f"{flag} {k}: more than the {cfg.timesteps} diffusion steps of {whose} (give at most "
                       f"{cfg.timesteps}, or 'all' for the exact bound)")


def parse_nll_timesteps(text: str | int | None) -> int | None:
    """'all' (or None) -> None, the full bound; K >= 1 -> a K-timestep estimate."""
    if text is None or str(text) == "all":
        return None
    try:
        k = int(text)
    except ValueError:
        raise BadInput(f"--nll-timesteps: expected 'all' or a number of timesteps, got {text!r}") from None
    if k < 1:
        raise BadInput(f"--nll-timesteps: must be at least 1, got {k}")
    return k


@dataclass(frozen=True)
class EvalPlan:
    """A checked evaluation request; nothing computed or stored yet."""

    run_id: int
    metrics: tuple[str, ...]
    n: int
    split: str
    nll_timesteps: int | None
    sampler: str
    steps: int
    guidance: float
    checkpoint_step: int
    seed: int
    classifier_id: int | None
    cfg: TrainConfig = field(repr=False)
    run_dir: Path = field(repr=False)
    note: str = ""  # what the user should know about the request as made, e.g. a smaller n
    utility_steps: int = UTILITY_STEPS  # training steps of each classifier of the utility metric
    augment: bool = False  # utility also trains on real + synthetic patches

    def nll_passes_per_image(self) -> int:
        """Network passes of the bound for one patch: its KL terms (every t >= 1, or K of them) and the
        decoder's at t = 0."""
        return (self.nll_timesteps or self.cfg.timesteps - 1) + 1

    def network_passes(self) -> int:
        """Passes of one image through the run's network that the plan makes: the bound's for each of
        n patches, and the chains of n samples, which every sample-based metric shares."""
        passes = self.n * self.nll_passes_per_image() if "nll" in self.metrics else 0
        if any(REQUESTS[m].samples for m in self.metrics):
            passes += network_passes(self.n, self.steps, self.guidance)
        return passes


def matching_classifier(store: Store, cfg: TrainConfig) -> queries.Classifier | None:
    """The newest classifier trained on the run's data at its resolution and preprocessing."""
    found = [c for c in queries.classifiers(store)
             if c.data == cfg.data and c.image_size == cfg.image_size and c.preprocess == cfg.preprocess]
    return found[-1] if found else None


@dataclass(frozen=True)
class EvalOnFinish:
    """What the worker evaluates when each run of a sweep finishes (`ablate --eval-on-finish`)."""

    metrics: str
    n: int
    nll_timesteps: str

    def spec(self) -> dict:
        return {"metrics": self.metrics, "n": self.n, "nll_timesteps": self.nll_timesteps}


def plan_eval_on_finish(store: Store, metrics: str, n: int | None, nll_timesteps: str,
                        configs: list[TrainConfig]) -> EvalOnFinish:
    """Check an --eval-on-finish request against the sweep's configurations before anything is
    queued: known metrics, enough held-out patches, a classifier where KID/FID/class need one.
    Without `n`, every run of the sweep uses DEFAULT_EVAL_N patches, or all that its smallest test
    split holds."""
    names = parse_metrics(metrics)
    k = parse_nll_timesteps(nll_timesteps)
    if n is not None and n < 4:
        raise BadInput(f"--eval-n: at least 4 images, got {n}")
    for cfg in configs:
        check_nll_timesteps(k, cfg, "a run of the sweep", "--eval-nll-timesteps")
    distinct = {(c.data, c.classes, c.image_size, c.preprocess): c for c in configs}.values()
    if n is None:
        n = min([DEFAULT_EVAL_N, *(held_out_count(cfg, None, "test") for cfg in distinct)])
    for cfg in distinct:
        available = held_out_count(cfg, None, "test")
        if n > available:
            raise BadInput(f"--eval-n {n}: the test split of {cfg.data} has only {available} patches of class "
                           f"{cfg.classes!r}")
        if "class" in names and not cfg.conditional and cfg.classes == "both":
            raise BadInput("--eval-on-finish class: class fidelity needs --conditional runs or runs on a single class")
        if any(REQUESTS[m].classifier for m in names) and matching_classifier(store, cfg) is None:
            raise BadInput(f"--eval-on-finish {metrics}: no PCam classifier for {cfg.data} at {cfg.image_size} px yet: "
                           f"train one first with `ddpm-tui classifier train --data {cfg.data} --image-size "
                           f"{cfg.image_size}`")
    return EvalOnFinish(",".join(names), n, str(nll_timesteps))


def plan_evaluation(store: Store, run_id, metrics: str = "nll", n: int | None = None, split: str = "test",
                    nll_timesteps: str | int | None = None, sampler: str = EVAL_SAMPLER, steps: int = EVAL_STEPS,
                    guidance: float = 0.0, checkpoint: int | None = None, seed: int = 0,
                    classifier: int | None = None, utility_steps: int = UTILITY_STEPS,
                    augment: bool = False) -> EvalPlan:
    """Check everything that can be checked before computing: BadInput names the first problem.
    Without `n`: DEFAULT_EVAL_N held-out patches, or the whole split when it holds fewer (the plan's
    `note` says so)."""
    names = parse_metrics(metrics)
    k = parse_nll_timesteps(nll_timesteps)
    if split not in SPLITS:
        raise BadInput(f"--split: {split!r} is not a held-out split (choose from {', '.join(SPLITS)})")
    if n is not None and n < 4:
        raise BadInput(f"--n: at least 4 images, got {n}")
    sampler_named(sampler)
    if not math.isfinite(guidance) or guidance < 0:
        raise BadInput(f"--guidance: must be a finite number >= 0, got {guidance}")
    if not 0 <= seed <= SEED_MAX:
        raise BadInput(f"--seed: must be in 0..{SEED_MAX}, got {seed}")
    if augment and "utility" not in names:
        raise BadInput("--augment goes with --metrics utility")
    if not 1 <= utility_steps <= 1_000_000:
        raise BadInput(f"--utility-steps: must be between 1 and 1000000, got {utility_steps}")
    loaded = load_run(store, run_id)
    run, cfg = loaded.record, loaded.cfg
    if steps < 1 or steps > cfg.timesteps:
        raise BadInput(f"--steps {steps}: must be between 1 and run {run.id}'s {cfg.timesteps} diffusion steps")
    check_nll_timesteps(k, cfg, f"run {run.id}")
    if k is not None and k > cfg.timesteps - 1:
        k = None  # as many timesteps as the bound has: the exact bound
    if guidance and not cfg.conditional:
        raise BadInput(f"--guidance: run {run.id} is unconditional; guidance needs a --conditional run")
    if "class" in names and not cfg.conditional and cfg.classes == "both":
        raise BadInput(f"--metrics class: run {run.id} is unconditional on both classes; class fidelity needs a "
                       "--conditional run or one trained on a single class")
    if "utility" in names and not cfg.conditional:
        raise BadInput(f"--metrics utility: run {run.id} is unconditional; a classifier can learn from samples only "
                       "when they carry both classes' labels (a --conditional run)")
    found = loaded.checkpoint(checkpoint, "; nothing to evaluate")
    available = held_out_count(cfg, run.run_dir, split)
    note = ""
    if n is None:
        n = min(DEFAULT_EVAL_N, available)
        if n < DEFAULT_EVAL_N:
            note = (f"run {run.id}: the {split} split has {available} patches of class {cfg.classes!r}, fewer "
                    f"than the default --n {DEFAULT_EVAL_N}: all of them are used")
    if n < 4:
        raise BadInput(f"--n: the {split} split has only {n} patches of class {cfg.classes!r}; at least 4 are needed")
    if n > available:
        raise BadInput(f"--n {n}: the {split} split has only {available} patches of class {cfg.classes!r}")
    classifier_id = None
    if any(REQUESTS[m].classifier for m in names):
        chosen = queries.get_classifier(store, classifier) if classifier is not None else matching_classifier(store, cfg)
        if chosen is None:
            raise BadInput(f"--metrics {','.join(m for m in names if REQUESTS[m].classifier)} needs a PCam classifier for "
                           f"{cfg.data} at {cfg.image_size} px: train one with `ddpm-tui classifier train --data "
                           f"{cfg.data} --image-size {cfg.image_size}`")
        if chosen.image_size != cfg.image_size or chosen.preprocess != cfg.preprocess:
            raise BadInput(f"--classifier {chosen.id}: trained at {chosen.image_size} px ({chosen.preprocess}), "
                           f"run {run.id} at {cfg.image_size} px ({cfg.preprocess})")
        refuse_leaking_classifier(chosen, cfg, run, split)
        classifier_id = chosen.id
    if "utility" in names:
        check_real_training_patches(cfg, run, n)
    return EvalPlan(run.id, names, n, split, k, sampler, steps, guidance, ckpt.checkpoint_step(found[0]), seed,
                    classifier_id, cfg, loaded.files.root, note, utility_steps, augment)


def check_real_training_patches(cfg: TrainConfig, run, n: int) -> None:
    """BadInput unless the run's train split holds the n real patches (half of each class) that
    the utility metric's real-data classifier learns from."""
    labels = split_labels(cfg, run.run_dir, "train")
    for label, name in enumerate(LABEL_NAMES):
        have, need = int((labels == label).sum()), (n + label) // 2
        if have < need:
            raise BadInput(f"--n {n}: the utility metric trains on {need} real {name} patches, but the train "
                           f"split of {cfg.data} has {have}")


def refuse_leaking_classifier(classifier: queries.Classifier, cfg: TrainConfig, run, split: str) -> None:
    """BadInput when the classifier learned from any patch of the evaluation's split (as the run
    froze it): its features would know them, and KID/FID/class fidelity would flatter the run."""
    record = read_training_record(Path(classifier.path)) if classifier.path else None
    source = open_run_split(cfg, run.run_dir, split)
    try:
        seen = seen_in(record, source, split)
    finally:
        source.close()
    if seen is None:
        raise BadInput(f"--classifier {classifier.id}: no record of the Kaggle patches it trained on, so it may have "
                       f"seen run {run.id}'s {split} split; train a new one with `ddpm-tui classifier train`")
    if seen:
        raise BadInput(f"--classifier {classifier.id}: it trained on {len(seen)} patches of run {run.id}'s {split} split "
                       f"(e.g. {seen[0]}); its features would flatter the run: evaluate on another split or train a "
                       f"classifier whose training patches are outside it")


def held_out_count(cfg: TrainConfig, run_dir, split: str) -> int:
    """How many patches of the run's classes the held-out split holds; BadInput names the split."""
    try:
        return count_of_classes(cfg, run_dir, split)
    except BadInput as exc:
        raise BadInput(f"--split {split}: {exc}") from None

"""Evaluating one run: check the request, compute each metric, store every number with how it was made.

Metrics (`--metrics`):
  nll    bits/dim, the variational bound on held-out patches (core.evaluate.nll)
  ssim   memorisation (highest SSIM of each sample against the training set) and diversity
         (distance of the samples' mean pairwise SSIM to real held-out patches') (core.evaluate.ssim)
  kid    KID in PCam-classifier features (core.evaluate.distances)
  fid    FID in PCam-classifier features
  class  class fidelity: samples scored by the classifier
  utility  the samples as training data: a classifier trained on them against one trained on as
         many real patches, both tested on real held-out patches (core.evaluate.utility)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.config import SEED_MAX, TrainConfig, config_from_dict
from core.data import CLASS_LABELS, open_split, resolve_data, to_model_input
from core.data.transforms import to_uint8
from core.errors import BadInput, WorkFailed
from core.evaluate import distances, ssim
from core.evaluate.classifier import load_classifier, predict
from core.evaluate.metrics import MEMORISATION_THRESHOLD, REQUESTS
from core.evaluate.nll import variational_bound
from core.evaluate.utility import UTILITY_STEPS, balanced_indices, utility_rows
from core.labels import LABEL_NAMES
from core.generation import generate
from core.images import make_grid, save_png
from core.samplers import sampler_named
from core.intervals import mean_ci, wilson_ci
from core.store import queries
from core.store.db import Store
from core.train import checkpoint as ckpt

DEFAULT_EVAL_N = 256  # held-out patches and samples per metric, for every face and the sweeps
SPLITS = ("test", "valid")  # held out: the training split would measure memorisation, not generalisation
FID_NO_INTERVAL = ("none: a bootstrap of FID lies above its own estimate (resampling duplicates rows; coverage "
                   "0.00-0.04 in simulation); `rank` gives intervals over seeds, and KID is the unbiased distance")
Progress = Callable[[str, int, int], None]  # (stage, units just done, total units of the stage)


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


def matching_classifier(store: Store, cfg: TrainConfig) -> queries.Classifier | None:
    """The newest classifier trained on the run's data at its resolution and preprocessing."""
    found = [c for c in queries.classifiers(store)
             if c.data == cfg.data and c.image_size == cfg.image_size and c.preprocess == cfg.preprocess]
    return found[-1] if found else None


def split_file(run_dir: Path | None) -> Path | None:
    path = Path(run_dir) / "split.json" if run_dir else None
    return path if path is not None and path.exists() else None


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
                    nll_timesteps: str | int | None = None, sampler: str = "ddim", steps: int = 50,
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
    run = queries.get_run(store, run_id)
    cfg = config_from_dict(run.config)
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
    found = ckpt.choose_checkpoint(Path(run.run_dir) / "checkpoints", cfg, checkpoint)
    if found is None:
        raise BadInput(f"run {run.id} has no checkpoint yet in {run.run_dir}/checkpoints; nothing to evaluate")
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
                    classifier_id, cfg, Path(run.run_dir), note, utility_steps, augment)


def check_real_training_patches(cfg: TrainConfig, run, n: int) -> None:
    """BadInput unless the run's train split holds the n real patches (half of each class) that
    the utility metric's real-data classifier learns from."""
    source = open_split(resolve_data(cfg.data), "train", split_file=split_file(run.run_dir))
    try:
        for label, name in enumerate(LABEL_NAMES):
            have, need = int((source.labels == label).sum()), (n + label) // 2
            if have < need:
                raise BadInput(f"--n {n}: the utility metric trains on {need} real {name} patches, but the train "
                               f"split of {cfg.data} has {have}")
    finally:
        source.close()


def refuse_leaking_classifier(classifier: queries.Classifier, cfg: TrainConfig, run, split: str) -> None:
    """BadInput when the classifier learned from any patch of the evaluation's split (as the run
    froze it): its features would know them, and KID/FID/class fidelity would flatter the run."""
    from core.evaluate.classifier import read_training_record, seen_in

    record = read_training_record(Path(classifier.path)) if classifier.path else None
    source = open_split(resolve_data(cfg.data), split, split_file=split_file(run.run_dir))
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
    try:
        source = open_split(resolve_data(cfg.data), split, split_file=split_file(run_dir))
    except BadInput as exc:
        raise BadInput(f"--split {split}: {exc}") from None
    try:
        return int(np.isin(source.labels, CLASS_LABELS[cfg.classes]).sum())
    finally:
        source.close()


def real_patches(cfg: TrainConfig, run_dir: Path, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n patches of the run's classes from `split` (a seeded random subset), prepared as the run saw
    them (its crop or resize, no augmentation): uint8 (n, S, S, 3), and their labels."""
    source = open_split(resolve_data(cfg.data), split, split_file=split_file(run_dir))
    try:
        candidates = np.flatnonzero(np.isin(source.labels, CLASS_LABELS[cfg.classes]))
        idx = np.sort(np.random.default_rng([seed, 7]).choice(candidates, n, replace=False))
        patches = np.stack([source.read(int(i), int(i) + 1)[0] for i in idx])
        labels = source.labels[idx].astype(np.int64)
    finally:
        source.close()
    return to_uint8(to_model_input(patches, cfg.image_size, cfg.preprocess, "cpu")), labels


def training_batches(cfg: TrainConfig, run_dir: Path, block: int = 512):
    """(training-split indices, uint8 images as the run sees them) of the run's classes, block by
    block (contiguous reads: the PCam train split is 7.2 GB and is never loaded whole)."""
    source = open_split(resolve_data(cfg.data), "train", split_file=split_file(run_dir))
    try:
        wanted = np.isin(source.labels, CLASS_LABELS[cfg.classes])
        for start in range(0, len(source), block):
            end = min(start + block, len(source))
            keep = np.flatnonzero(wanted[start:end])
            if keep.size:
                images = source.read(start, end)[keep]
                yield keep + start, to_uint8(to_model_input(images, cfg.image_size, cfg.preprocess, "cpu"))
    finally:
        source.close()


def read_training_patch(cfg: TrainConfig, run_dir: Path):
    source = open_split(resolve_data(cfg.data), "train", split_file=split_file(run_dir))

    def read(i: int) -> np.ndarray:
        return to_uint8(to_model_input(source.read(i, i + 1), cfg.image_size, cfg.preprocess, "cpu"))[0]

    return read, source


def autocast_for(cfg: TrainConfig, device: torch.device):
    """The autocast the run trained with (CUDA only), so the evaluated network computes as it did."""
    from contextlib import nullcontext

    if device.type == "cuda" and cfg.precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)
    return nullcontext()


@dataclass
class Result:
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    details: dict
    sample_based: bool = False
    uses_classifier: bool = False


def evaluate(store: Store, plan: EvalPlan, device: str = "auto", on_progress: Progress | None = None,
             eval_batch: int | None = None) -> list[queries.Evaluation]:
    """Compute the plan's metrics and store one evaluation row per number. Returns the rows.
    `eval_batch`: image-timesteps per network pass of the bound (default: 64 on a CPU, where larger
    batches run slower per image, 512 on a GPU)."""
    from core.inference import load_run_model

    progress = on_progress or (lambda stage, done, total: None)
    net, diffusion, cfg, _, _ = load_run_model(store, plan.run_id, device, plan.checkpoint_step)
    dev = next(net.parameters()).device
    eval_batch = eval_batch or (512 if dev.type == "cuda" else 64)
    real, real_labels = real_patches(cfg, plan.run_dir, plan.split, plan.n, plan.seed)
    results: list[Result] = []
    with autocast_for(cfg, dev):
        if "nll" in plan.metrics:
            results.append(nll_result(net, diffusion, cfg, plan, real, real_labels, dev, progress, eval_batch))
        samples = None
        if any(REQUESTS[m].samples for m in plan.metrics):
            samples = draw_samples(net, diffusion, cfg, plan, dev, progress)
    if "ssim" in plan.metrics:
        results += ssim_results(cfg, plan, samples, real, progress)
    if any(REQUESTS[m].classifier for m in plan.metrics):
        results += feature_results(store, cfg, plan, samples, real, progress)
    if "utility" in plan.metrics:
        results += utility_results(cfg, plan, samples, dev, progress)
    failures = [f"{r.metric}: {reason}" for r in results if (reason := failure_reason(r))]
    rows = []
    for r in results:
        if failure_reason(r):
            continue
        rows.append(queries.add_evaluation(
            store, plan.run_id, r.metric, r.value, r.ci_low, r.ci_high, r.n, plan.split, plan.seed, r.details,
            checkpoint_step=plan.checkpoint_step,
            sampler=plan.sampler if r.sample_based else None, steps=plan.steps if r.sample_based else None,
            guidance=plan.guidance if r.sample_based else None,
            classifier_id=plan.classifier_id if r.uses_classifier else None))
    if failures:
        raise WorkFailed(f"run {plan.run_id}: evaluation failed for {'; '.join(failures)} (nothing stored for "
                         f"{'it' if len(failures) == 1 else 'them'}; {len(rows)} other numbers stored)")
    return rows


def failure_reason(result: Result) -> str | None:
    """Why a computed number must not be stored (NaN or infinite value or bound), or None: a NaN is a
    failed evaluation, never a value (SQLite refuses it, PostgreSQL would store it and break `rank`)."""
    if "failed" in result.details:
        return result.details["failed"]
    bounds = [v for v in (result.ci_low, result.ci_high) if v is not None]
    if not all(math.isfinite(v) for v in (result.value, *bounds)):
        return f"the value is {result.value} with interval [{result.ci_low}, {result.ci_high}], not a finite number"
    return None


def nll_result(net, diffusion, cfg, plan: EvalPlan, real, labels, device, progress, eval_batch) -> Result:
    x0 = torch.from_numpy(real).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    y = torch.from_numpy(labels).to(device) if cfg.conditional else None
    per_image = (plan.nll_timesteps or diffusion.num_timesteps - 1) + 1
    total = len(real) * per_image
    parts = []
    for start in range(0, len(real), 64):
        chunk = slice(start, start + 64)
        parts.append(variational_bound(
            lambda x, t, lab: net(x, t, lab), diffusion, x0[chunk], y[chunk] if y is not None else None,
            timesteps=plan.nll_timesteps, seed=plan.seed * 7919 + start, max_batch=eval_batch,
            on_progress=lambda done: progress("nll", done, total)))
    totals = np.concatenate([p.total for p in parts])
    interval = mean_ci(totals)
    details = {
        "unit": "bits/dim", "estimate": plan.nll_timesteps is not None,
        "timesteps": "all" if plan.nll_timesteps is None else plan.nll_timesteps,
        "prior": float(np.concatenate([p.prior for p in parts]).mean()),
        "decoder": float(np.concatenate([p.decoder for p in parts]).mean()),
        "per_image": [round(float(v), 6) for v in totals],
        "likelihood": "log p(x|y) with the true labels, guidance 0" if cfg.conditional else "log p(x)",
    }
    if plan.nll_timesteps is None:  # every t: the mean term per timestep, the bound's breakdown
        details["terms"] = [round(float(v), 6) for v in np.concatenate([p.kl for p in parts]).mean(axis=0)]
    return Result("nll", interval.value, interval.low, interval.high, len(totals), details)


def draw_samples(net, diffusion, cfg, plan: EvalPlan, device, progress) -> np.ndarray:
    """plan.n samples (a conditional run's alternate between the classes, 0 then 1)."""
    progress("samples", 0, plan.n)
    with torch.inference_mode():
        images = generate(net, diffusion, plan.n, cfg.image_size, plan.sampler, plan.steps, plan.guidance, None,
                          seed=plan.seed, device=device).images
    progress("samples", plan.n, plan.n)
    return images


def ssim_results(cfg, plan: EvalPlan, samples: np.ndarray, real: np.ndarray, progress) -> list[Result]:
    return [memorisation_result(cfg, plan, samples, progress), diversity_result(samples, real, progress, plan.seed)]


def memorisation_result(cfg, plan: EvalPlan, samples: np.ndarray, progress) -> Result:
    """`ssim_memorisation`, a guard, not a rank key: the fraction of samples that copy a training
    patch (SSIM >= MEMORISATION_THRESHOLD to it or one of its 8 dihedral transforms, near-blank
    samples excepted) with its Wilson interval; the closest pairs go to a figure with their SSIM."""
    read, source = read_training_patch(cfg, plan.run_dir)
    try:
        progress("ssim", 0, 3)
        found = ssim.memorisation(samples, training_batches(cfg, plan.run_dir), read, threshold=MEMORISATION_THRESHOLD)
        progress("ssim", 1, 3)
        closest = np.argsort(-np.where(found.blank, -1.0, found.max_ssim), kind="stable")[:8]
        matches = [ssim.dihedral(read(int(found.nearest[g])), int(found.transform[g])) for g in closest]
    finally:
        source.close()
    figure = plan.run_dir / "eval" / f"memorisation-step-{plan.checkpoint_step:08d}-seed-{plan.seed}.png"
    captions = [f"SSIM {found.max_ssim[g]:.3f}" + (" blank" if found.blank[g] else "") for g in closest]
    save_png(figure, memorisation_figure(samples[closest], np.stack(matches), captions, max(1, 96 // cfg.image_size)))
    copies = wilson_ci(found.copies, len(samples))
    tissue = found.max_ssim[~found.blank]
    return Result("ssim_memorisation", copies.value, copies.low, copies.high, len(samples), {
        "what": f"fraction of samples with SSIM >= {found.threshold} to a training patch or one of its 8 dihedral "
                "transforms (near-blank samples never count); a guard, flagged above 0, never a rank key",
        "threshold": found.threshold, "flagged": found.copies > 0, "copies": found.copies,
        "blank_samples": int(found.blank.sum()), "blank_sd": ssim.BLANK_SD,
        "quantiles": {str(q): float(np.quantile(tissue, q)) for q in (0.5, 0.9, 0.99, 1.0)} if tissue.size else {},
        "max_ssim_per_sample": [round(float(v), 5) for v in found.max_ssim],
        "nearest_train_index": found.nearest.tolist(), "nearest_transform": found.transform.tolist(),
        "figure": str(figure),
        "figure_ssim": [round(float(found.max_ssim[g]), 5) for g in closest]}, sample_based=True)


def memorisation_figure(samples: np.ndarray, matches: np.ndarray, captions: list[str], scale: int) -> np.ndarray:
    """One row per pair: the sample, the training patch it matched (as transformed), and its caption
    (the pair's SSIM) written beside them."""
    from PIL import Image, ImageDraw, ImageFont

    pad = 2
    pairs = make_grid(np.stack([img for pair in zip(samples, matches) for img in pair]), ncols=2, pad=pad, scale=scale)
    row_height = samples.shape[1] * scale + pad
    canvas = Image.new("RGB", (pairs.shape[1] + 110, pairs.shape[0]), "white")
    canvas.paste(Image.fromarray(pairs), (0, 0))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for row, caption in enumerate(captions):
        draw.text((pairs.shape[1] + 4, pad + row * row_height + row_height // 2 - 6), caption, fill="black", font=font)
    return np.asarray(canvas)


def diversity_result(samples: np.ndarray, real: np.ndarray, progress, seed: int) -> Result:
    """`ssim_diversity`: the distance of the samples' mean pairwise SSIM to the real held-out
    patches' own, lower is better (the raw pairwise SSIM ranked pure noise best)."""
    generated_matrix = ssim.pairwise_matrix(samples, seed=seed)
    progress("ssim", 1, 3)
    real_matrix = ssim.pairwise_matrix(real, seed=seed)
    progress("ssim", 1, 3)
    found = ssim.diversity(generated_matrix, real_matrix)
    return Result("ssim_diversity", found.distance, *found.distance_ci, len(samples), {
        "what": "|mean pairwise SSIM of samples - that of real held-out patches| (0: the real data's own "
                "diversity; lower is better); 95% CI from jackknife variances over whole images",
        "generated": found.generated.value, "generated_se": found.generated.se,
        "real_held_out": found.real.value, "real_se": found.real.se,
        "difference": found.generated.value - found.real.value, "difference_ci": list(found.difference_ci),
        "images": found.generated.images, "real_images": found.real.images}, sample_based=True)


def feature_results(store: Store, cfg, plan: EvalPlan, samples: np.ndarray, real: np.ndarray, progress) -> list[Result]:
    row = queries.get_classifier(store, plan.classifier_id)
    model = load_classifier(Path(row.path))
    progress("features", 0, 2)
    gen_feats, gen_probs = predict(model, samples)
    real_feats, _ = predict(model, real)
    progress("features", 2, 2)
    space = f"PCam-classifier {row.id} features (not comparable with Inception features)"
    out = []
    if "kid" in plan.metrics:
        interval, subsets = distances.kid(gen_feats, real_feats, seed=plan.seed)
        out.append(Result("kid", interval.value, interval.low, interval.high, len(samples), {
            "space": space, "subsets": len(subsets), "subset_size": len(samples) // len(subsets),
            "per_subset": [float(v) for v in subsets], "spread": float(np.std(subsets, ddof=1))},
            sample_based=True, uses_classifier=True))
    if "fid" in plan.metrics:
        out.append(fid_result(gen_feats, real_feats, space, plan.seed))
    if "class" in plan.metrics:
        predicted = (gen_probs >= 0.5).astype(np.int64)
        if cfg.conditional:
            intended = np.arange(len(samples)) % 2
            per_class = {}
            for label, name in enumerate(LABEL_NAMES):
                mask = intended == label
                c = wilson_ci(int((predicted[mask] == label).sum()), int(mask.sum()))
                per_class[name] = {"accuracy": c.value, "ci": [c.low, c.high], "n": c.n}
            overall = wilson_ci(int((predicted == intended).sum()), len(samples))
            what = "classifier accuracy on the class each sample was drawn for"
        else:
            label = CLASS_LABELS[cfg.classes][0]
            overall = wilson_ci(int((predicted == label).sum()), len(samples))
            per_class = {}
            what = f"fraction of samples the classifier calls {cfg.classes}"
        out.append(Result("class_fidelity", overall.value, overall.low, overall.high, len(samples), {
            "what": what, "per_class": per_class, "classifier_accuracy": row.accuracy, "classifier_auc": row.auc},
            sample_based=True, uses_classifier=True))
    return out


def utility_results(cfg, plan: EvalPlan, samples: np.ndarray, device, progress) -> list[Result]:
    """TSTR against TRTR (core.evaluate.utility): the samples (both classes in turn) and as many
    real training patches, half of each class, as the run sees them; tested on up to TEST_LIMIT
    real patches of the plan's held-out split."""
    from core.evaluate.classifier import held_out_patches
    from core.evaluate.utility import TEST_LIMIT

    source = open_split(resolve_data(cfg.data), "train", split_file=split_file(plan.run_dir))
    try:
        chosen = balanced_indices(source.labels, plan.n, plan.seed)
        real = np.stack([source.read(int(i), int(i) + 1)[0] for i in chosen])
        real_labels = source.labels[chosen]
    finally:
        source.close()
    real = to_uint8(to_model_input(real, cfg.image_size, cfg.preprocess, "cpu"))
    test, test_labels = held_out_patches(resolve_data(cfg.data), plan.split, cfg.image_size, cfg.preprocess,
                                         TEST_LIMIT, split_file(plan.run_dir), plan.seed)
    classifiers = 3 if plan.augment else 2
    progress("utility", 0, classifiers)
    rows = utility_rows(samples, np.arange(len(samples)) % 2, real, real_labels, test, test_labels,
                        plan.utility_steps, plan.seed, device, plan.augment,
                        on_classifier=lambda done, total: progress("utility", 1, total))
    return [Result(r.metric, r.interval.value, r.interval.low, r.interval.high, len(samples), r.details,
                   sample_based=True) for r in rows]


def fid_result(gen_feats: np.ndarray, real_feats: np.ndarray, space: str, seed: int) -> Result:
    """FID without an interval (FID_NO_INTERVAL says why) and FID-infinity beside it; a covariance
    square root that cannot be computed honestly makes a failed result that says why."""
    try:
        found = distances.fid(gen_feats, real_feats, seed=seed)
    except distances.FrechetError as exc:
        return Result("fid", math.nan, None, None, len(gen_feats), {"failed": str(exc)})
    fit = ({"sizes": list(found.sizes), "fid": [float(v) for v in found.at_size]} if found.infinity is not None
           else f"needs at least {distances.MIN_EXTRAPOLATION} images per set")
    return Result("fid", found.value, None, None, len(gen_feats), {
        "space": space, "ci": FID_NO_INTERVAL, "fid_infinity": found.infinity, "fid_infinity_fit": fit},
        sample_based=True, uses_classifier=True)


@dataclass(frozen=True)
class ClassifierRequest:
    data: str
    data_root: Path
    image_size: int
    preprocess: str
    steps: int
    batch_size: int
    seed: int


def plan_classifier(data: str, image_size: int = 32, preprocess: str = "center-crop", steps: int = 600,
                    batch_size: int = 64, seed: int = 0, device: str = "auto") -> ClassifierRequest:
    """Check a `classifier train` request before anything is computed or stored, its memory on
    `device` included."""
    from core.config import IMAGE_SIZES, INT_MAX, PREPROCESS

    if image_size not in IMAGE_SIZES:
        raise BadInput(f"--image-size: unknown value {image_size} (choose from {', '.join(map(str, IMAGE_SIZES))})")
    if preprocess not in PREPROCESS:
        raise BadInput(f"--preprocess: unknown value {preprocess!r} (choose from {', '.join(PREPROCESS)})")
    for name, value in (("max-steps", steps), ("batch-size", batch_size)):
        if not 1 <= value <= INT_MAX:
            raise BadInput(f"--{name}: must be between 1 and {INT_MAX}, got {value}")
    if not 0 <= seed <= SEED_MAX:
        raise BadInput(f"--seed: must be in 0..{SEED_MAX}, got {seed}")
    from core.evaluate.classifier import check_classifier_fits
    from core.device import pick_device

    check_classifier_fits(image_size, batch_size, pick_device(device))
    return ClassifierRequest(data, resolve_data(data), image_size, preprocess, steps, batch_size, seed)


def train_and_store_classifier(store: Store, runs_dir: Path, request: ClassifierRequest, device: str = "auto",
                               on_step: Callable[[int, float], None] | None = None) -> queries.Classifier:
    """Train a classifier (core.evaluate.classifier), store its row and its weights under
    <runs dir>/classifiers/<id>/classifier.pt."""
    from core.evaluate.classifier import save_classifier, train_classifier
    from core.train.run import prepare_runs_dir
    from core.device import pick_device

    root = prepare_runs_dir(runs_dir)
    model, report = train_classifier(request.data_root, request.image_size, request.preprocess, request.steps,
                                     request.batch_size, seed=request.seed, device=pick_device(device), on_step=on_step)
    row = queries.add_classifier(store, data=request.data, image_size=request.image_size, preprocess=request.preprocess,
                                 steps=request.steps, accuracy=report.accuracy,
                                 auc=None if math.isnan(report.auc) else report.auc, n_eval=report.n,
                                 split=report.split, path="")
    path = root / "classifiers" / str(row.id) / "classifier.pt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        save_classifier(model.cpu(), path, {"id": row.id, "data": request.data, "image_size": request.image_size,
                                            "preprocess": request.preprocess}, report.trained_on)
    except BaseException:
        queries.delete_classifier(store, row.id)
        raise
    queries.update_classifier(store, row.id, path=str(path))
    return queries.get_classifier(store, row.id)

"""Computing each metric of a checked plan (core.evaluate.planning): one Result per stored number, with
how it was made in its details; a number that is not finite is a failed result, never stored."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.data import CLASS_LABELS, resolve_data
from core.data.prepared import read_patches, run_split_file, split_labels, training_batches, training_patch_reader
from core.evaluate import distances, ssim
from core.evaluate.classifier import held_out_patches, load_classifier, predict
from core.evaluate.metrics import MEMORISATION_THRESHOLD
from core.evaluate.nll import variational_bound
from core.evaluate.planning import EvalPlan
from core.evaluate.utility import TEST_LIMIT, balanced_indices, utility_rows
from core.generation import generate
from core.images import make_grid, save_png
from core.intervals import mean_ci, wilson_ci
from core.labels import LABEL_NAMES
from core.run_dir import RunDir
from core.store import queries
from core.store.db import Store

FID_NO_INTERVAL = ("none: a bootstrap of FID lies above its own estimate (resampling duplicates rows; coverage "
                   "0.00-0.04 in simulation); `rank` gives intervals over seeds, and KID is the unbiased distance")
Progress = Callable[[str, int, int], None]  # (stage, units just done, total units of the stage)


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
    total = len(real) * plan.nll_passes_per_image()
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
    read, source = training_patch_reader(cfg, plan.run_dir)
    try:
        progress("ssim", 0, 3)
        found = ssim.memorisation(samples, training_batches(cfg, plan.run_dir), read, threshold=MEMORISATION_THRESHOLD)
        progress("ssim", 1, 3)
        closest = np.argsort(-np.where(found.blank, -1.0, found.max_ssim), kind="stable")[:8]
        matches = [ssim.dihedral(read(int(found.nearest[g])), int(found.transform[g])) for g in closest]
    finally:
        source.close()
    figure = RunDir(plan.run_dir).evaluations / f"memorisation-step-{plan.checkpoint_step:08d}-seed-{plan.seed}.png"
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
    labels = split_labels(cfg, plan.run_dir, "train")
    chosen = balanced_indices(labels, plan.n, plan.seed)
    real, real_labels = read_patches(cfg, plan.run_dir, "train", chosen), labels[chosen]
    test, test_labels = held_out_patches(resolve_data(cfg.data), plan.split, cfg.image_size, cfg.preprocess,
                                         TEST_LIMIT, run_split_file(plan.run_dir), plan.seed)
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

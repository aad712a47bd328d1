"""Evaluating one run: compute the metrics of a checked plan (core.evaluate.planning) on the run's
network and real held-out patches (core.data.prepared), and store every number with how it was made.

Metrics (`--metrics`, core.evaluate.metrics):
  nll    bits/dim, the variational bound on held-out patches (core.evaluate.nll)
  ssim   memorisation (highest SSIM of each sample against the training set) and diversity
         (distance of the samples' mean pairwise SSIM to real held-out patches') (core.evaluate.ssim)
  kid    KID in PCam-classifier features (core.evaluate.distances)
  fid    FID in PCam-classifier features
  class  class fidelity: samples scored by the classifier
  utility  the samples as training data: a classifier trained on them against one trained on as
         many real patches, both tested on real held-out patches (core.evaluate.utility)
The computations are core.evaluate.results.
"""

from __future__ import annotations

from typing import Callable

from core.data.prepared import random_patches
from core.errors import WorkFailed
from core.evaluate.metrics import REQUESTS
from core.evaluate.planning import EvalPlan
from core.evaluate.results import (Progress, Result, draw_samples, failure_reason, feature_results, nll_result,
                                   ssim_results, utility_results)
from core.inference import inference_autocast, load_run_model
from core.store import queries
from core.store.db import Store


def evaluate(store: Store, plan: EvalPlan, device: str = "auto", on_progress: Progress | None = None,
             eval_batch: int | None = None, say: Callable[[str], None] | None = None) -> list[queries.Evaluation]:
    """Compute the plan's metrics and store one evaluation row per number. Returns the rows.
    `eval_batch`: image-timesteps per network pass of the bound (default: 64 on a CPU, where larger
    batches run slower per image, 512 on a GPU); `say` gets the lines worth showing on the way."""
    progress = on_progress or (lambda stage, done, total: None)
    net, diffusion, cfg, _, _ = load_run_model(store, plan.run_id, device, plan.checkpoint_step,
                                               plan.network_passes(), say)
    dev = next(net.parameters()).device
    eval_batch = eval_batch or (512 if dev.type == "cuda" else 64)
    real, real_labels = random_patches(cfg, plan.run_dir, plan.split, plan.n, plan.seed)
    results: list[Result] = []
    with inference_autocast(cfg, dev):
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

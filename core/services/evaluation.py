"""Evaluating runs and ranking sweeps: stored evaluations, detached evaluation jobs, a sweep's
missing evaluations, its ranking."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput
from core.evaluate.defaults import EVAL_SAMPLER, EVAL_STEPS
from core.evaluate.metrics import REQUESTS
from core.services.session import Session
from core.services.views import Evaluation
from core.store import queries


@dataclass
class EvaluationJob:
    """A detached evaluation this face started: its process, its runs, its log."""

    process: object  # subprocess.Popen
    run_ids: list[int]
    log: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.process.poll()


class EvaluationUseCases(Session):
    def evaluations(self, run_id: int) -> list[Evaluation]:
        """The newest evaluation of each metric of a run."""
        return list(queries.latest_evaluations(self.store, [run_id]).get(run_id, {}).values())

    def default_metrics(self, run_id: int) -> str:
        """nll and ssim, and kid/fid (and class where it applies) when a classifier fits the run."""
        from core.evaluate.planning import matching_classifier
        from core.loaded_run import load_run

        cfg = load_run(self.store, run_id).cfg
        metrics = ["nll", "ssim"]
        if matching_classifier(self.store, cfg) is not None:
            metrics += ["kid", "fid"] + (["class"] if cfg.conditional or cfg.classes != "both" else [])
        return ",".join(metrics)

    def start_evaluation(self, run_ids: list[int], metrics: str | None = None, n: int | None = None,
                         nll_timesteps: str = "all", checkpoint: int | None = None) -> EvaluationJob:
        """Check the request for every run, then evaluate them in a detached process (it outlives
        the TUI, as training does)."""

        from core.evaluate.job import job_command
        from core.evaluate.planning import plan_evaluation
        from core.runner.lifecycle import child_env
        from core.runner.processes import spawn_detached

        chosen = metrics or self.default_metrics(run_ids[0])
        for run_id in run_ids:
            plan_evaluation(self.store, run_id, chosen, n, nll_timesteps=nll_timesteps, checkpoint=checkpoint)
        log = Path(self.runs_dir) / "eval-logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-runs-{'-'.join(map(str, run_ids))}.log"
        process = spawn_detached(job_command(run_ids, chosen, n, nll_timesteps, checkpoint), log,
                                 env=child_env(self.store))
        return EvaluationJob(process, list(run_ids), log, time.time())

    def evaluation_outcome(self, job: EvaluationJob) -> tuple[str, bool]:
        """(one line on how an ended evaluation went, whether it succeeded)."""
        rows = [e for run_id in job.run_ids for e in self.evaluations(run_id) if e.created_at >= job.started_at]
        runs = ", ".join(map(str, job.run_ids))
        if job.exit_code() == 0:
            shown = "; ".join(f"run {e.run_id} {e.metric} {e.value:.4g}" for e in rows[:4])
            return f"evaluation of run(s) {runs} done: {shown or 'nothing new stored'}", True
        return f"evaluation of run(s) {runs} failed (exit {job.exit_code()}): see {job.log}", False

    def sweep_ranking(self, sweep_id: int):
        """The sweep's ranking (core.rank.sweep; mixed settings are ranked and flagged), or None
        while nothing of it is evaluated."""
        from core.rank.sweep import rank_sweep

        try:
            return rank_sweep(self.store, sweep_id, mixed=True)
        except BadInput:
            return None

    def sweep_eval_jobs(self, sweep_id: int) -> dict[str, int]:
        """How many of the sweep's queued evaluations are queued, running, finished, failed."""
        ids = [r.id for r in queries.list_runs(self.store, sweep_id=sweep_id)]
        counts: dict[str, int] = {}
        for job in queries.eval_jobs(self.store, ids) if ids else []:
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    def sweep_targets(self, sweep_id: int | str, only_missing: bool, metrics: str | None = None,
                      n: int | None = None, nll_timesteps: str = "all",
                      fallback_metrics: str | None = None) -> tuple[list[int], str, int | None, str]:
        """(run ids, metrics, n, nll timesteps) of a sweep's evaluation: its finished runs (with
        `only_missing`, those lacking one of the metrics). Without `metrics`, the sweep's
        --eval-on-finish settings, else `fallback_metrics`, else the defaults of its first run."""
        from core.evaluate.planning import parse_metrics

        sweep = queries.get_sweep(self.store, sweep_id)
        spec = (sweep.spec or {}).get("eval_on_finish") or {}
        finished = queries.list_runs(self.store, status="finished", sweep_id=sweep.id)
        if metrics is None and spec:
            metrics, n, nll_timesteps = spec["metrics"], spec["n"], spec["nll_timesteps"]
        elif metrics is None:
            metrics = fallback_metrics or (self.default_metrics(finished[0].id) if finished else "nll")
        if not only_missing:
            return [r.id for r in finished], metrics, n, nll_timesteps
        needed = [REQUESTS[m].judged_by for m in parse_metrics(metrics)]
        latest = queries.latest_evaluations(self.store, [r.id for r in finished])
        missing = [r.id for r in finished if any(m not in latest.get(r.id, {}) for m in needed)]
        return missing, metrics, n, nll_timesteps

    def evaluate_sweep_missing(self, sweep_id: int) -> tuple[list[int], EvaluationJob | None]:
        """Start a detached evaluation of the sweep's finished runs that lack its metrics (its
        --eval-on-finish ones, or the defaults); returns (run ids, the job or None)."""
        missing, metrics, n, nll_timesteps = self.sweep_targets(sweep_id, only_missing=True)
        if not missing:
            return [], None
        return missing, self.start_evaluation(missing, metrics, n, nll_timesteps)

    def plan_evaluation(self, run_id: int | str, metrics: str = "nll", n: int | None = None, split: str = "test",
                        nll_timesteps: str = "all", sampler: str = EVAL_SAMPLER, steps: int = EVAL_STEPS,
                        guidance: float = 0.0, checkpoint: int | None = None, seed: int = 0, classifier: int | None = None,
                        **utility):
        """A checked evaluation request of one run (core.evaluate.planning.plan_evaluation; `utility`:
        its utility_steps and augment)."""
        from core.evaluate.planning import plan_evaluation
        return plan_evaluation(self.store, run_id, metrics, n, split, nll_timesteps, sampler, steps, guidance,
                               checkpoint, seed, classifier, **utility)

    def evaluate(self, plan, device: str = "auto", on_progress=None, say=None) -> list[dict]:
        """Evaluate in this process and store each metric; returns the stored records. `say` gets
        the lines worth showing on the way."""
        from core.evaluate.service import evaluate
        return [queries.evaluation_record(r)
                for r in evaluate(self.store, plan, device=device, on_progress=on_progress, say=say)]

    def rank(self, sweep_id: int | str | None = None, metric: str | None = None, mixed: bool = False):
        """The ranking of a sweep's configurations (the newest sweep without `sweep_id`)."""
        from core.rank.sweep import rank_sweep
        return rank_sweep(self.store, sweep_id, metric, mixed)

    # ---- the PCam classifier whose features KID/FID use -------------------------------------------
    def train_classifier(self, request, device: str = "auto", on_step=None):
        """Train the classifier of `request` (core.evaluate.classifier_service.plan_classifier) and store it."""
        from core.evaluate.classifier_service import train_and_store_classifier
        return train_and_store_classifier(self.store, self.runs_dir, request, device, on_step=on_step)

    def classifiers(self) -> list[dict]:
        """The stored classifiers as plain records."""
        fields = ("id", "data", "image_size", "preprocess", "steps", "accuracy", "auc", "n_eval", "split", "path",
                  "created_at")
        return [{f: getattr(r, f) for f in fields} for r in queries.classifiers(self.store)]

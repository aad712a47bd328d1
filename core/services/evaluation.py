"""Evaluating runs and ranking sweeps: stored evaluations, detached evaluation jobs, a sweep's
missing evaluations, its ranking."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput
from core.services.session import Session
from core.services.views import EvaluationView
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
    def evaluations(self, run_id: int) -> list[EvaluationView]:
        """The newest evaluation of each metric of a run."""
        latest = queries.latest_evaluations(self.store, [run_id]).get(run_id, {})
        return [EvaluationView.of(queries.evaluation_record(e)) for e in latest.values()]

    def default_metrics(self, run_id: int) -> str:
        """nll and ssim, and kid/fid (and class where it applies) when a classifier fits the run."""
        from core.config import config_from_dict
        from core.evaluate.service import matching_classifier

        cfg = config_from_dict(queries.get_run(self.store, run_id).config)
        metrics = ["nll", "ssim"]
        if matching_classifier(self.store, cfg) is not None:
            metrics += ["kid", "fid"] + (["class"] if cfg.conditional or cfg.classes != "both" else [])
        return ",".join(metrics)

    def start_evaluation(self, run_ids: list[int], metrics: str | None = None, n: int | None = None,
                         nll_timesteps: str = "all", checkpoint: int | None = None) -> EvaluationJob:
        """Check the request for every run, then evaluate them in a detached process (it outlives
        the TUI, as training does)."""

        from core.evaluate.job import job_command
        from core.evaluate.service import plan_evaluation
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

    def evaluate_sweep_missing(self, sweep_id: int) -> tuple[list[int], int | None]:
        """Start a detached evaluation of the sweep's finished runs that lack its metrics (its
        --eval-on-finish ones, or the defaults); returns (run ids, the job or None)."""
        sweep = queries.get_sweep(self.store, sweep_id)
        spec = (sweep.spec or {}).get("eval_on_finish") or {}
        finished = queries.list_runs(self.store, status="finished", sweep_id=sweep_id)
        if not finished:
            return [], None
        metrics = spec.get("metrics") or self.default_metrics(finished[0].id)
        latest = queries.latest_evaluations(self.store, [r.id for r in finished])
        wanted = [{"ssim": "ssim_memorisation", "class": "class_fidelity"}.get(m, m) for m in metrics.split(",")]
        missing = [r.id for r in finished if any(m not in latest.get(r.id, {}) for m in wanted)]
        if not missing:
            return [], None
        return missing, self.start_evaluation(missing, metrics, spec.get("n"), spec.get("nll_timesteps", "all"))

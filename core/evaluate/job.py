"""An evaluation in its own detached process, like a training run, the store's URL in DDPM_TUI_DB:

    python -m core.evaluate.job RUN [RUN ...] [--metrics M] [--n N]   started by the TUI
    python -m core.evaluate.job --job ID                              a queued job the worker claimed

It outlives whoever started it; its results land in the store as `ddpm-tui eval` stores them, and
a queued job ends `finished` or `failed` with its reason.
"""

from __future__ import annotations

import argparse
import os
import sys

from core.errors import BadInput, WorkFailed
from core.locations import inherited_store_url
from core.run_dir import RunDir


def job_command(run_ids: list[int], metrics: str, n: int | None, nll_timesteps: str = "all",
                checkpoint: int | None = None) -> list[str]:
    """The detached evaluation's command line (n None: the default, see plan_evaluation)."""
    return [sys.executable, "-m", "core.evaluate.job", *map(str, run_ids), "--metrics", metrics,
            *(["--n", str(n)] if n is not None else []), "--nll-timesteps", str(nll_timesteps),
            *(["--checkpoint", str(checkpoint)] if checkpoint is not None else [])]


def start_job_process(store, job, env_extra: dict | None = None):
    """Start the detached process of a claimed evaluation job and hand the job over to it."""
    from core.runner.lifecycle import child_env
    from core.runner.processes import spawn_detached
    from core.store import queries

    run = queries.get_run(store, job.run_id)
    log = RunDir(run.run_dir).evaluations / f"job-{job.id}.log"
    proc = spawn_detached([sys.executable, "-m", "core.evaluate.job", "--job", str(job.id)], log,
                          env=child_env(store, env_extra))
    queries.set_eval_job(store, job.id, expect=("running",), pid=proc.pid)
    return proc


def run_job(store, job_id: int) -> int:
    """Evaluate a claimed job; it ends finished, or failed with the reason."""
    from core.evaluate.planning import plan_evaluation
    from core.evaluate.service import evaluate
    from core.store import queries

    job = queries.get_eval_job(store, job_id)
    if job.status != "running":
        print(f"evaluation job {job_id} is {job.status}, not claimed", file=sys.stderr)
        return 1
    queries.set_eval_job(store, job_id, expect=("running",), pid=os.getpid())
    try:
        plan = plan_evaluation(store, job.run_id, job.metrics, job.n, nll_timesteps=job.nll_timesteps)
        rows = evaluate(store, plan, say=lambda line: print(line, flush=True))
    except Exception as exc:
        reason = str(exc) if isinstance(exc, (BadInput, WorkFailed)) else f"{exc.__class__.__name__}: {exc}"
        queries.set_eval_job(store, job_id, status="failed", reason=reason.splitlines()[0] if reason else "failed")
        print(f"error: {reason}", file=sys.stderr)
        return 1
    queries.set_eval_job(store, job_id, status="finished", reason=f"{len(rows)} numbers stored")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate.job")
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--job", type=int)
    parser.add_argument("--metrics", default="nll")
    parser.add_argument("--n", type=int)
    parser.add_argument("--nll-timesteps", default="all")
    parser.add_argument("--checkpoint", type=int)
    args = parser.parse_args(argv)
    url = inherited_store_url("python -m core.evaluate.job (--job ID | RUN...)")
    if url is None:
        return 2
    from core.evaluate.planning import plan_evaluation
    from core.evaluate.service import evaluate
    from core.store.db import Store

    store = Store(url)
    if args.job is not None:
        return run_job(store, args.job)
    try:
        for run in args.runs:
            plan = plan_evaluation(store, run, args.metrics, args.n, nll_timesteps=args.nll_timesteps,
                                   checkpoint=args.checkpoint)
            print(f"evaluating run {plan.run_id}: {', '.join(plan.metrics)} on {plan.n} {plan.split} patches", flush=True)
            if plan.note:
                print(plan.note, flush=True)
            for row in evaluate(store, plan, say=lambda line: print(line, flush=True)):
                interval = f" [{row.ci_low:.5g}, {row.ci_high:.5g}]" if row.ci_low is not None else ""
                print(f"run {row.run_id} {row.metric} {row.value:.5g}{interval}", flush=True)
    except (BadInput, WorkFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

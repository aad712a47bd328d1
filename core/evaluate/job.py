"""An evaluation in its own detached process, like a training run: `python -m core.evaluate.job
RUN [RUN ...] [--metrics M] [--n N] ...`, the store's URL in DDPM_TUI_DB. Started by the TUI so an
evaluation outlives it; its results land in the store as `ddpm-tui eval` stores them."""

from __future__ import annotations

import argparse
import os
import sys

from core.errors import BadInput, WorkFailed
from core.runner.execute import STORE_ENV


def job_command(run_ids: list[int], metrics: str, n: int, nll_timesteps: str = "all") -> list[str]:
    return [sys.executable, "-m", "core.evaluate.job", *map(str, run_ids), "--metrics", metrics, "--n", str(n),
            "--nll-timesteps", str(nll_timesteps)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate.job")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--metrics", default="nll")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--nll-timesteps", default="all")
    args = parser.parse_args(argv)
    if STORE_ENV not in os.environ:
        print(f"{STORE_ENV} must name the store", file=sys.stderr)
        return 2
    from core.evaluate.service import evaluate, plan_evaluation
    from core.store.db import Store

    store = Store(os.environ[STORE_ENV])
    try:
        for run in args.runs:
            plan = plan_evaluation(store, run, args.metrics, args.n, nll_timesteps=args.nll_timesteps)
            print(f"evaluating run {plan.run_id}: {', '.join(plan.metrics)} on {plan.n} {plan.split} patches", flush=True)
            for row in evaluate(store, plan):
                print(f"run {row.run_id} {row.metric} {row.value:.5g} [{row.ci_low:.5g}, {row.ci_high:.5g}]", flush=True)
    except (BadInput, WorkFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

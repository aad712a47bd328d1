"""Training commands: `demo`, `train` (in the foreground), `ablate` (a queued grid), `worker`."""

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import BadInput
from core.evaluate.defaults import DEFAULT_EVAL_N
from ddpm_tui.cli import interactive
from ddpm_tui.options import Where, global_options, sweep_options, train_options


@global_options
def demo(
    no_tui: Annotated[bool, typer.Option("--no-tui", help="train in the foreground instead of opening the TUI")] = False,
    steps: Annotated[int, typer.Option("--steps", help="training steps of the demo run")] = 0,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="train a fresh network instead of continuing from the weights the demo ships with")] = False,
    where: Where = None,
):
    """Build the demo dataset, queue a small CPU-sized run, start a worker and open the TUI on it.
    The run continues from weights shipped with the tool (trained on the demo data), so its samples
    show tissue from the first grid; --from-scratch starts from a fresh network."""
    from core.config import DEMO_PRESET, demo_config

    interactive_terminal = not no_tui and sys.stdout.isatty() and sys.stdin.isatty()
    lab = where.lab()
    plan = lab.plan_run(demo_config(steps or DEMO_PRESET["max_steps"] * (5 if interactive_terminal else 1), from_scratch))
    if not from_scratch:
        typer.echo("the demo run starts from the weights shipped for its network (trained on the demo data; "
                   "--from-scratch trains a fresh one)", err=True)
    if not interactive_terminal:
        outcome, run = train_with_progress(lab, lambda: lab.start_new_run(plan))
        final = lab.final_artifacts(run.id)
        typer.echo(f"run {run.id} {outcome}; samples: {final.get('samples')}; reverse process (x_t | "
                   f"predicted x_0): {final.get('gif')}", err=True)
        return
    settings = interactive.tui_settings()
    run = lab.launch(plan.cfg, queue=True, plan=plan)
    lab.start_worker()
    interactive.open_tui(where.db_url, where.runs_dir, settings, open_run_id=run.id)


@train_options
@global_options
def train(
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of training options")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="continue this run id from its last checkpoint")] = None,
    checkpoint: Annotated[Optional[int], typer.Option("--checkpoint", help="with --resume: continue from this step's checkpoint (newer ones are set aside)")] = None,
    rdzv_endpoint: Annotated[Optional[str], typer.Option("--rdzv-endpoint", help="with --nnodes > 1: HOST:PORT where the nodes' torchrun agents meet (c10d)")] = None,
    train_values: dict = None, where: Where = None,
):
    """Train in the foreground with a progress bar; the run is recorded in the store. With --nproc
    above 1 the run trains under torchrun (DistributedDataParallel)."""
    from core.config import build_config

    if resume is not None:
        given = [k for k, v in train_values.items() if v is not None]
        if given or config:
            raise BadInput(f"--resume continues a run with its stored config; drop --{given[0] if given else 'config'}")
        lab = where.lab(create=False)

        def start():
            return lab.resume_here(resume, checkpoint, rdzv_endpoint)
    else:
        if checkpoint is not None:
            raise BadInput("--checkpoint goes with --resume")
        lab = where.lab()
        plan = lab.plan_run(build_config(train_values, config), rdzv_endpoint=rdzv_endpoint)

        def start():
            return lab.start_new_run(plan)

    outcome, run = train_with_progress(lab, start, rdzv_endpoint)
    final = lab.run(run.id)
    typer.echo(f"run {run.id} {outcome} at step {final.step}/{final.total_steps}", err=True)
    if outcome == "stopped":
        typer.echo(f"resume with: ddpm-tui train --resume {run.id}", err=True)


def train_with_progress(lab, start, rdzv_endpoint=None):
    """Put a run in `running` with `start()` (owned by this process) and train it here, with a
    progress bar on a terminal and a line every 50 steps otherwise. Returns (outcome, run)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)

    def say(text: str) -> None:  # above the live bar on a terminal, one unwrapped line otherwise
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    columns = [TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn("loss {task.fields[loss]}"),
               TextColumn("{task.fields[rate]} img/s"), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        run = start()
        say(f"run {run.id}: {run.run_dir}")
        task = progress.add_task("train", total=run.total_steps or None, completed=run.step, loss="-", rate="-")

        def on_step(stats):
            loss = "nan" if stats.loss is None else f"{stats.loss:.4f}"
            progress.update(task, completed=stats.step, total=stats.total, loss=loss, rate=f"{stats.img_per_s:.1f}")
            if not console.is_terminal and (stats.step % 50 == 0 or stats.step == stats.total):
                console.print(f"step {stats.step}/{stats.total} loss {loss} {stats.img_per_s:.1f} img/s "
                              f"eta {stats.eta_s:.0f}s")

        return lab.train_here(run, on_step, say, rdzv_endpoint), run


@sweep_options
@global_options
def ablate(
    seeds: Annotated[int, typer.Option("--seeds", help="runs per configuration, seeds --seed .. --seed+N-1")] = 1,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of training options")] = None,
    sweep_name: Annotated[str, typer.Option("--sweep-name", help="name of the sweep")] = "",
    eval_on_finish: Annotated[Optional[str], typer.Option("--eval-on-finish", help="metrics the worker evaluates as each run finishes, e.g. nll,kid")] = None,
    eval_n: Annotated[Optional[int], typer.Option("--eval-n", help=f"held-out patches and samples per evaluation [default: {DEFAULT_EVAL_N}, or all the smallest test split holds]")] = None,
    eval_nll_timesteps: Annotated[Optional[str], typer.Option("--eval-nll-timesteps", help="all, or K for an estimated bound [default: all]")] = None,
    yes_large: Annotated[bool, typer.Option("--yes-large", help="queue a grid of more than 512 runs")] = False,
    train_values: dict = None, where: Where = None,
):
    """Queue a grid of runs: any training option may be a comma list (';' for --dim-mults and
    --attn-resolutions). Prints the sweep id."""
    if eval_on_finish is None and (eval_n is not None or eval_nll_timesteps is not None):
        raise BadInput(f"{'--eval-n' if eval_n is not None else '--eval-nll-timesteps'} goes with --eval-on-finish")
    sweep, runs, axes = where.lab().queue_sweep(train_values, seeds, sweep_name, config, yes_large, eval_on_finish,
                                                eval_n, eval_nll_timesteps or "all")
    typer.echo(str(sweep.id))
    typer.echo(f"sweep {sweep.id}: {len(runs)} runs queued over {', '.join(axes) or 'seeds'}", err=True)


@global_options
def worker(
    slots: Annotated[int, typer.Option("--slots", help="runs at once")] = 1,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPU ids to spread slots over, one each (0,1,2,3) or in groups (0,1;2,3) for --nproc runs")] = None,
    until_empty: Annotated[bool, typer.Option("--until-empty", help="exit when nothing is queued or running")] = False,
    poll: Annotated[float, typer.Option("--poll", help="seconds between queue checks")] = 1.0,
    where: Where = None,
):
    """Run queued runs, `--slots` at a time, until SIGTERM (unstarted runs stay queued)."""
    logger, handler = logging.getLogger("ddpm_tui"), logging.StreamHandler(sys.stderr)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:  # the worker's own log lines, for this command only (it may run inside a longer process)
        where.lab().run_worker(slots, gpus, poll, until_empty)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

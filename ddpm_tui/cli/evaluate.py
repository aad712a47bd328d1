"""Sampling and judging runs: `sample`, `eval`, `rank`, `classifier train|list`."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import BadInput
from core.evaluate.defaults import DEFAULT_EVAL_N, EVAL_SAMPLER, EVAL_STEPS, UTILITY_STEPS
from core.evaluate.metrics import REQUESTS, guards, rank_keys
from core.samplers import default_steps_help, sampler_choices
from ddpm_tui.cli.render import (
    classifier_lines,
    echo_json,
    evaluation_lines,
    ranking_lines,
    say_above,
    stage_progress,
    values_ranking_lines,
)
from ddpm_tui.options import Where, global_options

classifier_app = typer.Typer(help="The PCam classifier whose features KID/FID use and which scores class fidelity.",
                             no_args_is_help=True)


@global_options
def sample(
    run: Annotated[str, typer.Argument(help="run id")],
    out: Annotated[Path, typer.Option("--out", help="PNG grid to write")],
    n: Annotated[int, typer.Option("--n", help="number of samples")] = 16,
    sampler: Annotated[str, typer.Option("--sampler", help=sampler_choices())] = "ddim",
    steps: Annotated[Optional[int], typer.Option("--steps", help=f"sampling steps [default: {default_steps_help()}]; ddpm is respaced when < T")] = None,
    eta: Annotated[float, typer.Option("--eta", help="DDIM eta (0 = deterministic)")] = 0.0,
    guidance: Annotated[float, typer.Option("--guidance", help="classifier-free guidance weight w")] = 0.0,
    class_name: Annotated[Optional[str], typer.Option("--class", help="cancerous|non_cancerous (conditional runs)")] = None,
    gif: Annotated[Optional[Path], typer.Option("--gif", help="also write the reverse process as a GIF")] = None,
    gif_show: Annotated[str, typer.Option("--gif-show", help="the GIF shows x_t beside the predicted x_0 (both), or one of them: both|x0|xt")] = "both",
    seed: Annotated[int, typer.Option("--seed", help="sampling seed")] = 0,
    scale: Annotated[int, typer.Option("--scale", help="enlarge each pixel (0 = to about 96 px)")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto|cpu|cuda")] = "auto",
    checkpoint: Annotated[Optional[int], typer.Option("--checkpoint", help="sample this step's checkpoint [default: the newest]")] = None,
    where: Where = None,
):
    """Draw samples from a run's EMA weights into a PNG grid (and a GIF of the reverse process)."""
    from rich.console import Console

    from core.config import check_device

    check_device(device)
    lab = where.lab(create=False)
    with stage_progress(Console(stderr=True)) as progress:
        task = progress.add_task("sampling", total=None)

        def on_step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = lab.sample(run, out, n=n, sampler=sampler, steps=steps, eta=eta, guidance=guidance,
                            class_name=class_name, gif=gif, seed=seed, scale=scale, device=device,
                            gif_show=gif_show, checkpoint=checkpoint, on_step=on_step, say=say_above(progress))
    typer.echo(result.chain, err=True)
    for path in result.paths:
        typer.echo(str(path))


@global_options
def eval_runs(
    ctx: typer.Context,
    runs: Annotated[Optional[list[str]], typer.Argument(help="run ids")] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="evaluate the finished runs of this sweep")] = None,
    missing: Annotated[bool, typer.Option("--missing", help="with --sweep: only runs without these metrics yet (retries failed evaluations)")] = False,
    metrics: Annotated[str, typer.Option("--metrics", help=f"comma list of {','.join(REQUESTS)}")] = "nll",
    n: Annotated[Optional[int], typer.Option("--n", help=f"held-out patches and samples per metric [default: {DEFAULT_EVAL_N}, or the whole split where it holds fewer]")] = None,
    split: Annotated[str, typer.Option("--split", help="held-out split: test|valid")] = "test",
    nll_timesteps: Annotated[str, typer.Option("--nll-timesteps", help="all (the exact bound, T network passes per image) or K (a stratified estimate from K timesteps)")] = "all",
    sampler: Annotated[str, typer.Option("--sampler", help=f"{sampler_choices()}, for the samples of ssim/kid/fid/class/utility")] = EVAL_SAMPLER,
    steps: Annotated[int, typer.Option("--steps", help="sampling steps")] = EVAL_STEPS,
    guidance: Annotated[float, typer.Option("--guidance", help="classifier-free guidance of the samples")] = 0.0,
    checkpoint: Annotated[Optional[int], typer.Option("--checkpoint", help="evaluate this step's checkpoint [default: the newest]")] = None,
    seed: Annotated[int, typer.Option("--seed", help="which held-out patches, noise and samples")] = 0,
    classifier: Annotated[Optional[int], typer.Option("--classifier", help="classifier id [default: the newest for the run's data and size]")] = None,
    utility_steps: Annotated[int, typer.Option("--utility-steps", help="with --metrics utility: training steps of each classifier")] = UTILITY_STEPS,
    augment: Annotated[bool, typer.Option("--augment", help="with --metrics utility: also train on real + synthetic patches and store the AUC gain")] = False,
    device: Annotated[str, typer.Option("--device", help="auto|cpu|cuda")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    where: Where = None,
):
    """Evaluate runs: NLL in bits/dim, SSIM memorisation and diversity, KID/FID in PCam-classifier
    features, class fidelity, and the samples' utility as training data (TSTR against TRTR). Every
    number is stored with its 95% CI and how it was made."""
    from rich.console import Console

    from core.config import check_device

    check_device(device)
    lab = where.lab(create=False)
    if sweep is not None:
        if runs:
            raise BadInput("give run ids or --sweep, not both")
        given = ctx.get_parameter_source("metrics").name != "DEFAULT"
        runs, metrics, n, nll_timesteps = lab.sweep_targets(sweep, missing, metrics if given else None, n,
                                                            nll_timesteps, fallback_metrics=metrics)
        if not runs:
            typer.echo(f"sweep {sweep}: nothing to evaluate (every finished run has {metrics})", err=True)
            return
    elif not runs:
        raise BadInput("give run ids, or --sweep ID")
    elif missing:
        raise BadInput("--missing goes with --sweep")
    plans = [lab.plan_evaluation(r, metrics, n, split, nll_timesteps, sampler, steps, guidance, checkpoint, seed,
                                 classifier, utility_steps=utility_steps, augment=augment) for r in runs]
    console = Console(stderr=True)
    records = []
    for plan in plans:
        if plan.note:
            typer.echo(f"note: {plan.note}", err=True)
        with stage_progress(console) as progress:
            tasks = {}

            def on_progress(stage, advance, total):
                if stage not in tasks:
                    tasks[stage] = progress.add_task(f"run {plan.run_id} {stage}", total=total)
                progress.advance(tasks[stage], advance)

            records += lab.evaluate(plan, device=device, on_progress=on_progress, say=say_above(progress))
    if as_json:
        echo_json(records)
        return
    for line in evaluation_lines(records):
        typer.echo(line)


@global_options
def rank(
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="sweep id [default: the newest]")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help=f"rank key: {', '.join(rank_keys())} ({', '.join(guards())}: guards shown beside, never rank keys); with --values, the name of the file's metric")] = None,
    mixed: Annotated[bool, typer.Option("--mixed", help="rank even when runs were evaluated with different settings")] = False,
    values: Annotated[Optional[Path], typer.Option("--values", help="rank results produced elsewhere: a .csv or .json file of configuration, seed, value rows (no store)")] = None,
    higher_is_better: Annotated[bool, typer.Option("--higher-is-better", help="with --values: larger values are better (a known --metric brings its own direction)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    where: Where = None,
):
    """Rank a sweep's configurations: each metric's mean and 95% CI over seeds, ties with the best,
    the main effect of each factor. With --values, rank a file of results the same way."""
    if values is not None:
        rank_values_file(values, sweep, metric, mixed, higher_is_better, as_json)
        return
    if higher_is_better:
        raise BadInput("--higher-is-better goes with --values (a sweep's metrics know their direction)")
    from core.rank.sweep import ranking_record

    ranking = where.lab(create=False).rank(sweep, metric, mixed)
    if as_json:
        echo_json(ranking_record(ranking))
        return
    for line in ranking_lines(ranking):
        typer.echo(line)


def rank_values_file(values: Path, sweep, metric, mixed: bool, higher_is_better: bool, as_json: bool) -> None:
    """`rank --values FILE`: the file's configurations ranked with a sweep's statistics."""
    from core.rank.values import rank_values, values_record

    if sweep is not None or mixed:
        raise BadInput("--values ranks a file, --sweep/--mixed a sweep from the store: give one")
    ranking = rank_values(values, metric, higher_is_better)
    if as_json:
        echo_json(values_record(ranking))
        return
    for line in values_ranking_lines(ranking):
        typer.echo(line)


@classifier_app.command("train")
@global_options
def classifier_train(
    data: Annotated[str, typer.Option("--data", help="dataset folder, or 'demo'")] = "demo",
    image_size: Annotated[int, typer.Option("--image-size", help="resolution of the runs it will judge")] = 32,
    preprocess: Annotated[str, typer.Option("--preprocess", help="center-crop|resize, as those runs")] = "center-crop",
    max_steps: Annotated[int, typer.Option("--max-steps", help="training steps")] = 600,
    batch_size: Annotated[int, typer.Option("--batch-size", help="patches per step")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto|cpu|cuda")] = "auto",
    where: Where = None,
):
    """Train the PCam classifier (train split; scored on the held-out split) and store it; prints its id."""
    from rich.console import Console

    from core.config import check_device
    from core.evaluate.classifier_service import plan_classifier

    check_device(device)
    request = plan_classifier(data, image_size, preprocess, max_steps, batch_size, seed, device)
    lab = where.lab()
    reached = 0

    def on_step(step: int, loss: float) -> None:
        nonlocal reached
        reached = step
        progress.update(task, completed=step)

    try:
        with stage_progress(Console(stderr=True)) as progress:
            task = progress.add_task("classifier", total=max_steps)
            row = lab.train_classifier(request, device, on_step=on_step)
    except KeyboardInterrupt:  # say where it stopped, as train does, instead of a bare "aborted"
        typer.echo(f"classifier training interrupted at step {reached}/{max_steps}; nothing stored (a classifier "
                   "is stored once trained)", err=True)
        raise typer.Exit(130) from None
    auc = f"{row.auc:.3f}" if row.auc is not None else "-"
    typer.echo(f"classifier {row.id}: accuracy {row.accuracy:.3f}, ROC AUC {auc} on {row.n_eval} {row.split} "
               f"patches ({row.image_size} px, {row.preprocess})", err=True)
    typer.echo(str(row.id))


@classifier_app.command("list")
@global_options
def classifier_list(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
                    where: Where = None):
    """The stored classifiers."""
    rows = where.lab(create=False).classifiers()
    if as_json:
        echo_json(rows)
        return
    for line in classifier_lines(rows):
        typer.echo(line)

"""The `ddpm-tui` command line. Errors: one line on stderr; exit 2 for bad input, 1 for failures."""


import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
import typer.core
from sqlalchemy.exc import SQLAlchemyError

from core.errors import BadInput, WorkFailed
from core.locations import RUNS_ENV, STORE_ENV, store_url
from core.locations import runs_dir as locations_runs_dir
from core.samplers import default_steps_help, sampler_choices
from ddpm_tui.options import ROOT_OPTIONS, global_options, sweep_options, train_options

try:  # typer >= 0.22 vendors click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

# Typer escapes "[default: x]" as "\[default: x]" for Rich whenever Rich is importable, also under
# rich_markup_mode=None (click's plain help, ours), which then prints the backslash.
typer.core.HAS_RICH = False

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="A terminal lab for denoising diffusion models of PCam patches.")
data_app = typer.Typer(help="Datasets: build the demo set, check a folder.", no_args_is_help=True)
app.add_typer(data_app, name="data")
runs_app = typer.Typer(help="Inspect and control runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

Store = tuple[str, Path]


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option("--db", envvar=STORE_ENV, help="database URL")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", envvar=RUNS_ENV, help="runs directory")] = None,
):
    """Open the TUI when no command is given."""
    ROOT_OPTIONS.clear()
    ROOT_OPTIONS.update(db=db, runs_dir=runs_dir)
    if ctx.invoked_subcommand is None:
        open_tui(store_url(db), locations_runs_dir(runs_dir), tui_settings())


def tui_settings():
    """The user's keys and notification settings, checked before the TUI takes the terminal."""
    from ddpm_tui.keys import load_settings

    return load_settings()


def open_tui(db_url: str, runs_dir: Path, settings, open_run_id: int | None = None) -> None:
    """Open the TUI. While the terminal's graphics probe waits for its answers (ddpm_tui.terminal_probe),
    the app is imported and the first read of the runs starts, so it is there when the app paints."""
    from ddpm_tui.terminal_probe import start_probe

    probe = start_probe()
    from ddpm_tui.tui.app import prepare_app

    app = prepare_app(db_url, runs_dir, open_run_id, settings)
    probe.join()
    app.run()


def open_store(ctx_store: Store, create: bool = True):
    """The store of --db. Commands that only read or act on existing runs pass create=False: they
    never create a database file (a missing one reads as empty)."""
    from core.store import Store as StoreClass

    return StoreClass(ctx_store[0]) if create else StoreClass.existing(ctx_store[0])


def echo_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@app.command()
@global_options
def demo(
    no_tui: Annotated[bool, typer.Option("--no-tui", help="train in the foreground instead of opening the TUI")] = False,
    steps: Annotated[int, typer.Option("--steps", help="training steps of the demo run")] = 0,
    ctx_store: Store = None,
):
    """Build the demo dataset, queue a small CPU-sized run, start a worker and open the TUI on it."""
    from core.config import DEMO_PRESET, TrainConfig
    from core.runner.lifecycle import launch as launch_run
    from core.train.run import new_run, plan_run

    interactive = not no_tui and sys.stdout.isatty() and sys.stdin.isatty()
    preset = dict(DEMO_PRESET, max_steps=steps or (DEMO_PRESET["max_steps"] * (5 if interactive else 1)))
    cfg = TrainConfig(**preset)
    plan = plan_run(cfg, ctx_store[1])
    store = open_store(ctx_store)
    if not interactive:
        from core.store import queries

        outcome, run = _train_with_progress(store, lambda: new_run(store, ctx_store[1], cfg, plan=plan))
        final = {a.kind: a.path for a in queries.artifacts(store, run.id) if a.kind in ("samples", "gif")}
        typer.echo(f"run {run.id} {outcome}; samples: {final.get('samples')}; reverse process (x_t | "
                   f"predicted x_0): {final.get('gif')}", err=True)
        return
    from core.services.lab import Lab

    settings = tui_settings()
    run = launch_run(store, ctx_store[1], cfg, queue=True, plan=plan)
    Lab(ctx_store[0], ctx_store[1]).start_worker()
    open_tui(ctx_store[0], ctx_store[1], settings, open_run_id=run.id)


# ---- data -------------------------------------------------------------------------------------
@data_app.command("demo")
def data_demo(out: Annotated[Path, typer.Argument(help="folder to write the PCam-layout h5 files to")]):
    """Write the offline demo dataset (PCam h5 layout) to OUT."""
    from core.data.demo import write_demo_dataset
    from core.outputs import check_writable

    check_writable(out, "data demo", folder=True)
    counts = write_demo_dataset(out)
    typer.echo(f"demo dataset written to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@data_app.command("check")
def data_check(
    path: Annotated[str, typer.Argument(help="dataset folder, or 'demo'")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
):
    """Validate a dataset: layout, counts per split and class, problems."""
    from core.data import cache_dir, resolve_data
    from core.data.check import check_dataset
    from core.text import printable

    report = check_dataset(resolve_data(path) if path == "demo" else path, cache=cache_dir())
    if as_json:
        echo_json(report)
    else:
        typer.echo(f"{printable(report['path'])}: {report['layout']} layout")
        for split, c in report["splits"].items():
            typer.echo(f"  {split:<6} {c['n']:>8} patches  cancerous {c['cancerous']:>8}  "
                       f"non_cancerous {c['non_cancerous']:>8}")
    if report["problems"]:
        for problem in report["problems"][:20]:
            typer.echo(f"error: {printable(problem)}", err=True)
        if len(report["problems"]) > 20:
            typer.echo(f"error: ... and {len(report['problems']) - 20} more problems", err=True)
        raise typer.Exit(2)


# ---- training ----------------------------------------------------------------------------------
@app.command()
@train_options
@global_options
def train(
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of training options")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="continue this run id from its last checkpoint")] = None,
    checkpoint: Annotated[Optional[int], typer.Option("--checkpoint", help="with --resume: continue from this step's checkpoint (newer ones are set aside)")] = None,
    rdzv_endpoint: Annotated[Optional[str], typer.Option("--rdzv-endpoint", help="with --nnodes > 1: HOST:PORT where the nodes' torchrun agents meet (c10d)")] = None,
    train_values: dict = None, ctx_store: Store = None,
):
    """Train in the foreground with a progress bar; the run is recorded in the store. With --nproc
    above 1 the run trains under torchrun (DistributedDataParallel)."""
    from core.config import build_config
    from core.runner.liveness import running_fields
    from core.store import queries
    from core.train.run import check_resumable, new_run, plan_run

    if resume is not None:
        given = [k for k, v in train_values.items() if v is not None]
        if given or config:
            raise BadInput(f"--resume continues a run with its stored config; drop --{given[0] if given else 'config'}")
        store = open_store(ctx_store, create=False)

        def start():
            run = check_resumable(store, resume, checkpoint, rdzv_endpoint=rdzv_endpoint)
            if not queries.set_status(store, run.id, "running", reason="resumed", expect=(run.status,),
                                      **running_fields()):
                raise BadInput(f"run {run.id} changed while resuming it; try again")
            return run
    else:
        if checkpoint is not None:
            raise BadInput("--checkpoint goes with --resume")
        plan = plan_run(build_config(train_values, config), ctx_store[1], rdzv_endpoint=rdzv_endpoint)
        store = open_store(ctx_store)

        def start():
            return new_run(store, ctx_store[1], plan.cfg, plan=plan)

    outcome, run = _train_with_progress(store, start, rdzv_endpoint)
    final = queries.get_run(store, run.id)
    typer.echo(f"run {run.id} {outcome} at step {final.step}/{final.total_steps}", err=True)
    if outcome == "stopped":
        typer.echo(f"resume with: ddpm-tui train --resume {run.id}", err=True)


def _train_with_progress(store, start, rdzv_endpoint=None):
    """Put a run in `running` with `start()` (owned by this process) and train it here (or, for
    several processes, under torchrun as a child), with a progress bar on a terminal and a line
    every 50 steps otherwise. Returns (outcome, run)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from core.config import config_from_dict
    from core.runner.follow import follow_attached
    from core.train.run import execute_run

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

        cfg = config_from_dict(run.config)
        if cfg.world_size == 1:
            return execute_run(store, run.id, on_step=on_step), run
        say(f"run {run.id}: {cfg.world_size} processes x batch {cfg.batch_size} = global batch "
            f"{cfg.global_batch_size} (torchrun; log in {run.run_dir}/stdout.log)")
        if cfg.nnodes > 1:
            from core.runner.lifecycle import other_nodes_command

            say(f"run {run.id}: waiting for {cfg.nnodes - 1} more node(s); on each, with the same store and "
                f"runs directory: {other_nodes_command(store, run, rdzv_endpoint)}")
        return follow_attached(store, run, on_step, rdzv_endpoint), run


# ---- sampling ----------------------------------------------------------------------------------
@app.command()
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
    ctx_store: Store = None,
):
    """Draw samples from a run's EMA weights into a PNG grid (and a GIF of the reverse process)."""
    from rich.console import Console

    from core.config import check_device
    from core.sample import sample_run

    check_device(device)
    store = open_store(ctx_store, create=False)
    with _stage_progress(Console(stderr=True)) as progress:
        task = progress.add_task("sampling", total=None)

        def on_step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = sample_run(store, run, out, n=n, sampler=sampler, steps=steps, eta=eta, guidance=guidance,
                            class_name=class_name, gif=gif, seed=seed, scale=scale, device=device,
                            gif_show=gif_show, checkpoint=checkpoint, on_step=on_step)
    typer.echo(result.chain, err=True)
    for path in result.paths:
        typer.echo(str(path))


# ---- evaluation -----------------------------------------------------------------------------------
classifier_app = typer.Typer(help="The PCam classifier whose features KID/FID use and which scores class fidelity.",
                             no_args_is_help=True)
app.add_typer(classifier_app, name="classifier")

METRIC_LABELS = {"nll": "NLL bits/dim", "ssim_memorisation": "SSIM memorisation", "ssim_diversity": "SSIM diversity",
                 "kid": "KID", "fid": "FID", "class_fidelity": "class fidelity"}


def _stage_progress(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description:<10}"), MofNCompleteColumn(), BarColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)


@app.command("eval")
@global_options
def eval_runs(
    runs: Annotated[Optional[list[str]], typer.Argument(help="run ids")] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="evaluate the finished runs of this sweep")] = None,
    missing: Annotated[bool, typer.Option("--missing", help="with --sweep: only runs without these metrics yet (retries failed evaluations)")] = False,
    metrics: Annotated[str, typer.Option("--metrics", help="comma list of nll,ssim,kid,fid,class")] = "nll",
    n: Annotated[Optional[int], typer.Option("--n", help="held-out patches and samples per metric [default: 256, or the whole split where it holds fewer]")] = None,
    split: Annotated[str, typer.Option("--split", help="held-out split: test|valid")] = "test",
    nll_timesteps: Annotated[str, typer.Option("--nll-timesteps", help="all (the exact bound, T network passes per image) or K (a stratified estimate from K timesteps)")] = "all",
    sampler: Annotated[str, typer.Option("--sampler", help=f"{sampler_choices()}, for the samples of ssim/kid/fid/class")] = "ddim",
    steps: Annotated[int, typer.Option("--steps", help="sampling steps")] = 50,
    guidance: Annotated[float, typer.Option("--guidance", help="classifier-free guidance of the samples")] = 0.0,
    checkpoint: Annotated[Optional[int], typer.Option("--checkpoint", help="evaluate this step's checkpoint [default: the newest]")] = None,
    seed: Annotated[int, typer.Option("--seed", help="which held-out patches, noise and samples")] = 0,
    classifier: Annotated[Optional[int], typer.Option("--classifier", help="classifier id [default: the newest for the run's data and size]")] = None,
    device: Annotated[str, typer.Option("--device", help="auto|cpu|cuda")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ctx_store: Store = None,
):
    """Evaluate runs: NLL in bits/dim, SSIM memorisation and diversity, KID/FID in PCam-classifier
    features, class fidelity. Every number is stored with its 95% CI and how it was made."""
    from rich.console import Console

    from core.config import check_device
    from core.evaluate.service import evaluate, plan_evaluation
    from core.store import queries

    check_device(device)
    store = open_store(ctx_store, create=False)
    if sweep is not None:
        if runs:
            raise BadInput("give run ids or --sweep, not both")
        runs, metrics, n, nll_timesteps = sweep_targets(store, sweep, missing, metrics, n, nll_timesteps)
        if not runs:
            typer.echo(f"sweep {sweep}: nothing to evaluate (every finished run has {metrics})", err=True)
            return
    elif not runs:
        raise BadInput("give run ids, or --sweep ID")
    elif missing:
        raise BadInput("--missing goes with --sweep")
    plans = [plan_evaluation(store, r, metrics, n, split, nll_timesteps, sampler, steps, guidance, checkpoint, seed,
                             classifier) for r in runs]
    console = Console(stderr=True)
    records = []
    for plan in plans:
        if plan.note:
            typer.echo(f"note: {plan.note}", err=True)
        with _stage_progress(console) as progress:
            tasks = {}

            def on_progress(stage, advance, total):
                if stage not in tasks:
                    tasks[stage] = progress.add_task(f"run {plan.run_id} {stage}", total=total)
                progress.advance(tasks[stage], advance)

            rows = evaluate(store, plan, device=device, on_progress=on_progress)
        records += [queries.evaluation_record(r) for r in rows]
    if as_json:
        echo_json(records)
        return
    typer.echo(f"{'run':>4}  {'metric':<18} {'value':>10}  {'95% CI':<22} {'n':>5}  {'split':<5}  {'ckpt':>8}  sampling")
    for r in records:
        ci = f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if r["ci_low"] is not None else "-"
        sampling = f"{r['sampler']} {r['steps']}" + (f" w={r['guidance']:g}" if r["guidance"] else "") if r["sampler"] else "-"
        typer.echo(f"{r['run_id']:>4}  {METRIC_LABELS.get(r['metric'], r['metric']):<18} {r['value']:>10.4g}  {ci:<22} "
                   f"{r['n']:>5}  {r['split']:<5}  {r['checkpoint_step']:>8}  {sampling}")
    notes = {r["details"].get("space") for r in records if r["details"].get("space")}
    for note in sorted(notes):
        typer.echo(f"KID/FID in {note}")
    if any(r["metric"] == "nll" and r["details"].get("estimate") for r in records):
        typer.echo("NLL from --nll-timesteps K is an unbiased estimate of the bound; its CI includes the timestep sampling")


def sweep_targets(store, sweep_id, missing: bool, metrics: str, n: int, nll_timesteps: str):
    """(run ids, metrics, n, nll timesteps) of a sweep's evaluation: its --eval-on-finish settings
    where the command did not give others, and with `missing` only runs lacking a metric."""
    import click

    from core.evaluate.service import parse_metrics
    from core.store import queries

    sweep = queries.get_sweep(store, sweep_id)
    spec = (sweep.spec or {}).get("eval_on_finish") or {}
    given = click.get_current_context().get_parameter_source
    if spec and given("metrics").name == "DEFAULT":
        metrics, n, nll_timesteps = spec["metrics"], spec["n"], spec["nll_timesteps"]
    finished = queries.list_runs(store, status="finished", sweep_id=sweep.id)
    if not missing:
        return [r.id for r in finished], metrics, n, nll_timesteps
    wanted = {"ssim": "ssim_memorisation", "class": "class_fidelity"}
    needed = [wanted.get(m, m) for m in parse_metrics(metrics)]
    latest = queries.latest_evaluations(store, [r.id for r in finished])
    return ([r.id for r in finished if any(m not in latest.get(r.id, {}) for m in needed)], metrics, n,
            nll_timesteps)


@app.command()
@global_options
def rank(
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="sweep id [default: the newest]")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="rank key: nll, kid, fid, ssim_diversity, class_fidelity (ssim_memorisation is a guard shown beside); with --values, the name of the file's metric")] = None,
    mixed: Annotated[bool, typer.Option("--mixed", help="rank even when runs were evaluated with different settings")] = False,
    values: Annotated[Optional[Path], typer.Option("--values", help="rank results produced elsewhere: a .csv or .json file of configuration, seed, value rows (no store)")] = None,
    higher_is_better: Annotated[bool, typer.Option("--higher-is-better", help="with --values: larger values are better (a known --metric brings its own direction)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ctx_store: Store = None,
):
    """Rank a sweep's configurations: each metric's mean and 95% CI over seeds, ties with the best,
    the main effect of each factor. With --values, rank a file of results the same way."""
    if values is not None:
        rank_values_file(values, sweep, metric, mixed, higher_is_better, as_json)
        return
    if higher_is_better:
        raise BadInput("--higher-is-better goes with --values (a sweep's metrics know their direction)")
    from core.rank.sweep import rank_sweep, ranking_record

    ranking = rank_sweep(open_store(ctx_store, create=False), sweep, metric, mixed)
    if as_json:
        echo_json(ranking_record(ranking))
        return
    for line in ranking_lines(ranking):
        typer.echo(line)


def rank_values_file(values: Path, sweep, metric, mixed: bool, higher_is_better: bool, as_json: bool) -> None:
    """`rank --values FILE`: the file's configurations ranked with a sweep's statistics."""
    from core.rank.values import rank_values, values_record
    from core.text import printable

    if sweep is not None or mixed:
        raise BadInput("--values ranks a file, --sweep/--mixed a sweep from the store: give one")
    ranking = rank_values(values, metric, higher_is_better)
    if as_json:
        echo_json(values_record(ranking))
        return
    width = max(len("configuration"), *(len(printable(c.config[0])) for c in ranking.configs))
    typer.echo(f"{printable(ranking.source)}: {len(ranking.configs)} configurations, ranked by "
               f"{printable(ranking.metric or 'value')} ({ranking.direction} is better)")
    typer.echo(f"{'configuration':<{width}}  seeds  p_worse   mean [95% CI]")
    best = ranking.configs[0] if ranking.configs[0].compared else None
    for c in ranking.configs:
        p = "n/c" if c.p_worse is None else f"{c.p_worse:.3g}"
        typer.echo(f"{printable(c.config[0]):<{width}}  {len(c.values):>5}  {p:<8}  {interval_cell(c, best)}")
    typer.echo(f"tie rule: {ranking.tie_test}")
    if any(not c.compared for c in ranking.configs):
        typer.echo(f"n/c: {ranking.one_seed_note}")
    typer.echo("intervals: " + "; ".join(sorted({c.ci_method for c in ranking.configs})))
    for line in ranking.left_out:
        typer.echo(f"left out: {printable(line)}")


def ranking_lines(ranking) -> list[str]:
    """The ranking as a text table with its notes (what `rank` prints and `export --format md` wraps)."""
    from core.rank.stats import DIRECTIONS, GUARDS
    from core.text import printable

    key = ranking.rankings[ranking.metric]
    metrics = list(ranking.rankings)
    configs = {m: {c.config: c for c in r.configs} for m, r in ranking.rankings.items()}
    widths = [max(len(f), *(len(str(c.config[i])) for c in key.configs)) for i, f in enumerate(ranking.factors)]
    lines = [f"sweep {ranking.sweep_id} ({printable(ranking.name)}): {len(key.configs)} configurations, ranked by "
             f"{ranking.metric} ({DIRECTIONS[ranking.metric]} is better)"]
    head = "  ".join(f"{f:<{w}}" for f, w in zip(ranking.factors, widths))
    guards = ranking.guards or {}
    head += "  seeds  p_worse   " + "  ".join(f"{m + ' [95% CI]':<34}" for m in metrics)
    head += "".join(f"  {m + ' (guard)':<30}" for m in guards) + "  loss~ (not comparable)"
    lines.append(head)
    for c in key.configs:
        cells = "  ".join(f"{str(v):<{w}}" for v, w in zip(c.config, widths))
        cells += f"  {len(c.values):>5}  {'n/c' if c.p_worse is None else f'{c.p_worse:.3g}':<8}  "
        for m in metrics:
            s = configs[m].get(c.config)
            cells += f"{'-' if s is None else interval_cell(s, ranking.rankings[m].configs[0]):<34}  "
        for m, stats in guards.items():
            g = stats.get(c.config)
            cells += f"{'-' if g is None else interval_cell(g, None):<30}  "
        loss = ranking.train_loss.get(c.config)
        lines.append(cells + ("-" if loss is None else f"{loss:.4f}"))
    lines.append(f"tie rule: {ranking.tie_test}")
    if any(not s.compared for r in ranking.rankings.values() for s in r.configs):
        lines.append(f"n/c: {ranking.one_seed_note}")
    for m in guards:
        lines.append(f"{m} (guard): {GUARDS[m]}; shown, never ranked")
    methods = sorted({s.ci_method for r in ranking.rankings.values() for s in r.configs})
    lines.append("intervals: " + "; ".join(methods))
    for m, r in ranking.rankings.items():
        lines.append(f"{m} evaluated with {r.settings}")
    lines.append("loss~: smoothed training loss; its scale depends on the noise schedule, so it never ranks")
    lines.append(f"main effects on {ranking.metric} (mean over the other factors and seeds, 95% CI):")
    for factor in ranking.factors:
        levels = [e for e in key.effects if e.factor == factor]
        lines.append(f"  {factor}: " + "   ".join(f"{e.level} {e.interval.value:.4g} [{e.interval.low:.4g}, "
                                                  f"{e.interval.high:.4g}]" for e in levels))
    if key.interaction is not None:
        i = key.interaction
        (a1, a2), (b1, b2) = (sorted({c.config[k] for c in key.configs}, key=str) for k in (0, 1))
        lines.append(f"interaction {' x '.join(ranking.factors)}, ({a1},{b1} - {a1},{b2}) - ({a2},{b1} - {a2},{b2}): "
                     f"{i.value:.4g} [{i.low:.4g}, {i.high:.4g}]")
    if ranking.missing:
        lines.append(f"without {ranking.metric}: " + ", ".join(f"run {k} ({printable(v)})"
                                                              for k, v in ranking.missing.items()))
    return lines


def interval_cell(stats, best) -> str:
    """'mean [low, high]' with the tie mark: =best, = (tied), nothing (worse), n/c (not compared)."""
    if stats.tied is None:
        mark = "n/c" if best is not None else ""
    else:
        mark = ("=best" if stats is best else "=") if stats.tied else ""
    return f"{stats.interval.value:.4g} [{stats.interval.low:.4g}, {stats.interval.high:.4g}] {mark}".rstrip()


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
    ctx_store: Store = None,
):
    """Train the PCam classifier (train split; scored on the held-out split) and store it; prints its id."""
    from rich.console import Console

    from core.config import check_device
    from core.evaluate.service import plan_classifier, train_and_store_classifier

    check_device(device)
    request = plan_classifier(data, image_size, preprocess, max_steps, batch_size, seed, device)
    store = open_store(ctx_store)
    reached = 0

    def on_step(step: int, loss: float) -> None:
        nonlocal reached
        reached = step
        progress.update(task, completed=step)

    try:
        with _stage_progress(Console(stderr=True)) as progress:
            task = progress.add_task("classifier", total=max_steps)
            row = train_and_store_classifier(store, ctx_store[1], request, device, on_step=on_step)
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
                    ctx_store: Store = None):
    """The stored classifiers."""
    from core.store import queries
    from core.text import printable

    rows = queries.classifiers(open_store(ctx_store, create=False))
    fields = ("id", "data", "image_size", "preprocess", "steps", "accuracy", "auc", "n_eval", "split", "path", "created_at")
    if as_json:
        echo_json([{f: getattr(r, f) for f in fields} for r in rows])
        return
    for r in rows:
        typer.echo(f"{r.id:>4}  {printable(r.data)}  {r.image_size} px {r.preprocess}  accuracy {r.accuracy:.3f}  "
                   f"AUC {r.auc if r.auc is None else round(r.auc, 3)}  ({r.n_eval} {r.split} patches)")


# ---- detached runs, queue, sweeps ------------------------------------------------------------------
@app.command()
@train_options
@global_options
def launch(
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of training options")] = None,
    queue: Annotated[bool, typer.Option("--queue", help="leave it queued for `ddpm-tui worker`")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local (this machine; torchrun when --nproc > 1) | k8s (a Kubernetes Job) | slurm (a SLURM job, through submitit)")] = "local",
    nodes: Annotated[int, typer.Option("--nodes", help="k8s, slurm: nodes, one torchrun each")] = 1,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", help="k8s, slurm: GPUs (training processes) per node")] = 1,
    image: Annotated[Optional[str], typer.Option("--image", help="k8s: container image with ddpm-tui installed")] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="k8s: namespace of the job")] = "default",
    store_secret: Annotated[str, typer.Option("--store-secret", help="k8s: Secret whose key 'url' is the store's URL")] = "ddpm-tui-store",
    runs_claim: Annotated[Optional[str], typer.Option("--runs-claim", help="k8s: PersistentVolumeClaim mounted at the runs directory")] = None,
    data_claim: Annotated[Optional[str], typer.Option("--data-claim", help="k8s: PersistentVolumeClaim holding the dataset, mounted read-only at --data")] = None,
    data_volume: Annotated[Optional[str], typer.Option("--data-volume", help="k8s: hostPath:/PATH or nfs:SERVER:/PATH holding the dataset, mounted read-only at --data")] = None,
    cpu: Annotated[Optional[str], typer.Option("--cpu", help="k8s: CPUs per pod, e.g. 16 or 500m [default: 4 per GPU]")] = None,
    memory: Annotated[Optional[str], typer.Option("--memory", help="k8s: memory per pod (request and limit), e.g. 64Gi [default: from the run's size]")] = None,
    node_selector: Annotated[Optional[list[str]], typer.Option("--node-selector", help="k8s: KEY=VALUE a node must be labelled with (repeatable)")] = None,
    toleration: Annotated[Optional[list[str]], typer.Option("--toleration", help="k8s: KEY[=VALUE][:EFFECT] taint the pods tolerate (repeatable)")] = None,
    priority_class: Annotated[Optional[str], typer.Option("--priority-class", help="k8s: PriorityClass of the pods")] = None,
    max_restarts: Annotated[Optional[int], typer.Option("--max-restarts", help="k8s: failed pods replaced before the job fails (preemptions and node drains do not count) [default: 0]; slurm: requeues after a preemption or time-limit warning [default: 3]")] = None,
    run_as_user: Annotated[int, typer.Option("--run-as-user", help="k8s: non-root user id the pods run as")] = 1000,
    job_ttl: Annotated[int, typer.Option("--job-ttl", help="k8s: seconds a finished job (and its Service) is kept")] = 3 * 24 * 3600,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="k8s: store the run waiting for its job and print the job's manifest (JSON, for kubectl apply -f -) instead of submitting it")] = False,
    partition: Annotated[Optional[str], typer.Option("--partition", help="slurm: partition")] = None,
    time_min: Annotated[int, typer.Option("--time", help="slurm: time limit in minutes")] = 24 * 60,
    cluster: Annotated[str, typer.Option("--cluster", help="slurm: slurm, or local (submitit runs the job on this machine)")] = "slurm",
    account: Annotated[Optional[str], typer.Option("--account", help="slurm: account charged for the job")] = None,
    qos: Annotated[Optional[str], typer.Option("--qos", help="slurm: quality of service")] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option("--cpus-per-task", help="slurm: CPUs per node's task (its torchrun and data loading) [default: the cluster's]")] = None,
    mem_gb: Annotated[Optional[int], typer.Option("--mem", help="slurm: memory per node in GB [default: the cluster's]")] = None,
    constraint: Annotated[Optional[str], typer.Option("--constraint", help="slurm: node features, e.g. a100|h100")] = None,
    train_values: dict = None, ctx_store: Store = None,
):
    """Start a training run as a detached background process, or as a job on a Kubernetes or SLURM
    cluster; prints the run id."""
    from core.config import build_config
    from core.executors import CLUSTER_EXECUTORS, check_executor
    from core.runner.lifecycle import launch as launch_run
    from core.train.run import plan_run

    if dry_run and executor != "k8s":
        raise BadInput("--dry-run goes with --executor k8s")
    if check_executor(executor) in CLUSTER_EXECUTORS:
        if queue:
            raise BadInput(f"--queue: a run for --executor {executor} is queued by its cluster, not by a worker")
        for name in ("nproc", "nnodes"):
            if train_values.get(name) is not None:
                raise BadInput(f"--executor {executor}: use --gpus-per-node and --nodes, not --{name}")
        if executor == "k8s":
            from core.executors.k8s import Placement

            placement = Placement(image or "", nodes, gpus_per_node, namespace, store_secret, runs_claim, data_claim,
                                  data_volume, cpu=cpu, memory=memory, node_selector=tuple(node_selector or ()),
                                  tolerations=tuple(toleration or ()), priority_class=priority_class,
                                  max_restarts=0 if max_restarts is None else max_restarts, run_as_user=run_as_user,
                                  ttl_s=job_ttl).check()
        else:
            from core.executors.slurm import Allocation

            allocation = Allocation(nodes, gpus_per_node, partition, time_min, cluster,
                                    3 if max_restarts is None else max_restarts, account, qos, cpus_per_task, mem_gb,
                                    constraint).check()
        cfg = build_config({**train_values, "nproc": str(gpus_per_node), "nnodes": str(nodes)}, config)
        if executor == "k8s":
            _launch_on_kubernetes(cfg, ctx_store, placement, dry_run)
        else:
            _launch_on_slurm(cfg, ctx_store, allocation)
        return
    plan = plan_run(build_config(train_values, config), ctx_store[1])
    run = launch_run(open_store(ctx_store), ctx_store[1], plan.cfg, queue=queue, plan=plan)
    typer.echo(str(run.id))


def _shared_store_only(ctx_store, executor: str) -> None:
    from core.store.db import sqlite_path

    if sqlite_path(ctx_store[0]) is not None:
        raise BadInput(f"--executor {executor}: the cluster's nodes must reach the store: use a PostgreSQL --db "
                       "(an SQLite file cannot be shared between hosts)")


def _launch_on_kubernetes(cfg, ctx_store, placement, dry_run):
    from core.executors import cluster_client
    from core.executors.k8s import manifest_list
    from core.runner.lifecycle import reserve_on_cluster, submit_to_cluster
    from core.train.run import plan_run

    placement = placement.fitted(cfg)
    _shared_store_only(ctx_store, "k8s")
    cluster = None if dry_run else cluster_client()
    plan = plan_run(cfg, ctx_store[1], on_this_machine=False)
    if dry_run:
        run, items = reserve_on_cluster(open_store(ctx_store), plan, placement)
        echo_json(manifest_list(items))
        typer.echo(f"dry run: nothing submitted; run {run.id} waits for its job: kubectl apply -f this manifest "
                   f"(or release it with `ddpm-tui runs stop {run.id}`)", err=True)
        return
    typer.echo(str(submit_to_cluster(open_store(ctx_store), plan, placement, cluster).id))


def _launch_on_slurm(cfg, ctx_store, allocation):
    from core.runner.lifecycle import submit_to_slurm
    from core.train.run import plan_run

    if allocation.cluster == "slurm":
        _shared_store_only(ctx_store, "slurm")
    plan = plan_run(cfg, ctx_store[1], on_this_machine=allocation.cluster == "local")
    typer.echo(str(submit_to_slurm(open_store(ctx_store), plan, allocation).id))


@app.command()
@sweep_options
@global_options
def ablate(
    seeds: Annotated[int, typer.Option("--seeds", help="runs per configuration, seeds --seed .. --seed+N-1")] = 1,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of training options")] = None,
    sweep_name: Annotated[str, typer.Option("--sweep-name", help="name of the sweep")] = "",
    eval_on_finish: Annotated[Optional[str], typer.Option("--eval-on-finish", help="metrics the worker evaluates as each run finishes, e.g. nll,kid")] = None,
    eval_n: Annotated[Optional[int], typer.Option("--eval-n", help="held-out patches and samples per evaluation [default: 256, or all the smallest test split holds]")] = None,
    eval_nll_timesteps: Annotated[Optional[str], typer.Option("--eval-nll-timesteps", help="all, or K for an estimated bound [default: all]")] = None,
    yes_large: Annotated[bool, typer.Option("--yes-large", help="queue a grid of more than 512 runs")] = False,
    train_values: dict = None, ctx_store: Store = None,
):
    """Queue a grid of runs: any training option may be a comma list (';' for --dim-mults and
    --attn-resolutions). Prints the sweep id."""
    import dataclasses

    from core.evaluate.service import plan_eval_on_finish
    from core.runner.lifecycle import plan_sweep, queue_sweep

    if eval_on_finish is None and (eval_n is not None or eval_nll_timesteps is not None):
        raise BadInput(f"{'--eval-n' if eval_n is not None else '--eval-nll-timesteps'} goes with --eval-on-finish")
    plan = plan_sweep(ctx_store[1], train_values, seeds, config, sweep_name, yes_large)
    if eval_on_finish is not None:
        spec = plan_eval_on_finish(open_store(ctx_store, create=False), eval_on_finish, eval_n, eval_nll_timesteps or "all",
                                   [p.cfg for p in plan.plans])
        plan = dataclasses.replace(plan, eval_on_finish=spec.spec())
    sweep, runs = queue_sweep(open_store(ctx_store), plan)
    typer.echo(str(sweep.id))
    typer.echo(f"sweep {sweep.id}: {len(runs)} runs queued over {', '.join(plan.axes) or 'seeds'}", err=True)


@app.command()
@global_options
def worker(
    slots: Annotated[int, typer.Option("--slots", help="runs at once")] = 1,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPU ids to spread slots over, one each (0,1,2,3) or in groups (0,1;2,3) for --nproc runs")] = None,
    until_empty: Annotated[bool, typer.Option("--until-empty", help="exit when nothing is queued or running")] = False,
    poll: Annotated[float, typer.Option("--poll", help="seconds between queue checks")] = 1.0,
    ctx_store: Store = None,
):
    """Run queued runs, `--slots` at a time, until SIGTERM (unstarted runs stay queued)."""
    from core.runner.worker import Worker, check_poll, check_slots, parse_gpu_groups

    slots, gpu_list, poll = check_slots(slots), parse_gpu_groups(gpus), check_poll(poll)
    logger, handler = logging.getLogger("ddpm_tui"), logging.StreamHandler(sys.stderr)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:  # the worker's own log lines, for this command only (it may run inside a longer process)
        Worker(open_store(ctx_store), slots, gpu_list, poll=poll, until_empty=until_empty).run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@runs_app.command("list")
@global_options
def runs_list(
    status: Annotated[Optional[str], typer.Option("--status", help="only runs with this status")] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="only runs of this sweep")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ctx_store: Store = None,
):
    """Every run with status, progress and loss."""
    from core.runner.liveness import reconcile
    from core.store import RUN_STATUSES, queries
    from core.text import printable

    if status is not None and status not in RUN_STATUSES:
        raise BadInput(f"--status: unknown status {status!r} (choose from {', '.join(RUN_STATUSES)})")
    store = open_store(ctx_store, create=False)
    reconcile(store)
    records = queries.run_records(store, status=status, sweep_id=None if sweep is None else queries.parse_id(sweep, "sweep"))
    if as_json:
        echo_json([{k: v for k, v in r.items() if k != "config"} for r in records])
        return
    typer.echo(f"{'id':>4}  {'name':<28} {'status':<9} {'step':>13}  {'loss':>8}  {'img/s':>7}  sweep")
    for r in records:
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else "-"
        rate = f"{r['img_per_s']:.1f}" if r["img_per_s"] is not None else "-"
        typer.echo(f"{r['id']:>4}  {printable(r['name'])[:28]:<28} {r['status']:<9} {r['step']:>6}/{r['total_steps']:<6}  "
                   f"{loss:>8}  {rate:>7}  {r['sweep_id'] or ''}")


@runs_app.command("show")
@global_options
def runs_show(run: Annotated[str, typer.Argument(help="run id")],
              as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
              ctx_store: Store = None):
    """One run: config, status history, summaries, notes, artifacts (and, for a run on a cluster, what
    the cluster says of its job)."""
    from core.executors import CLUSTER_EXECUTORS
    from core.runner.liveness import reconcile
    from core.store import queries
    from core.text import printable

    store = open_store(ctx_store, create=False)
    reconcile(store)
    r = queries.get_run(store, run)
    job_state = None
    if r.executor in CLUSTER_EXECUTORS and r.external_id:
        from core.runner.lifecycle import settle_cluster_run  # imports torch: only for cluster runs

        job_state = settle_cluster_run(store, r)
        r = queries.get_run(store, r.id)
    record = queries.run_record(r, queries.summaries(store, [r.id]).get(r.id), queries.run_tags(store, [r.id]).get(r.id))
    record["job_state"] = job_state
    record["events"] = [{"status": e.status, "reason": e.reason, "at": e.at} for e in queries.status_events(store, r.id)]
    record["notes"] = [{"text": n.text, "at": n.created_at} for n in queries.notes(store, r.id)]
    record["metrics"] = queries.summaries(store, [r.id]).get(r.id, {})
    record["artifacts"] = [{"kind": a.kind, "path": a.path, "step": a.step} for a in queries.artifacts(store, r.id)][-20:]
    record["evaluations"] = [queries.evaluation_record(e) for e in queries.latest_evaluations(store, [r.id]).get(r.id, {}).values()]
    if as_json:
        echo_json(record)
        return
    for key in ("id", "name", "status", "step", "total_steps", "loss", "global_batch", "executor", "external_id",
                "job_state", "host", "pid", "run_dir", "exit_reason", "tags"):
        typer.echo(f"{key:>12}: {printable(record[key])}")
    typer.echo("      config: " + printable(", ".join(f"{k}={v}" for k, v in record["config"].items())))
    for e in record["events"]:
        typer.echo(f"       event: {e['status']:<9} {printable(e['reason'] or '')}")
    for n in record["notes"]:
        typer.echo(f"        note: {printable(n['text'])}")
    for e in record["evaluations"]:
        ci = f" [{e['ci_low']:.4g}, {e['ci_high']:.4g}]" if e["ci_low"] is not None else ""
        typer.echo(f"  evaluation: {e['metric']:<18} {e['value']:.4g}{ci} n={e['n']} {e['split']} step {e['checkpoint_step']}")


@runs_app.command("stop")
@global_options
def runs_stop(run: Annotated[str, typer.Argument(help="run id")],
              wait: Annotated[float, typer.Option("--wait", help="seconds to wait for the checkpoint")] = 0.0,
              ctx_store: Store = None):
    """Stop a running run: it checkpoints and becomes `stopped` (SIGTERM on its own host; a request
    through the store, which its trainer reads with its heartbeat, from any other)."""
    from core.runner.lifecycle import stop

    typer.echo(stop(open_store(ctx_store, create=False), run, wait=wait).message, err=True)


@runs_app.command("kill")
@global_options
def runs_kill(run: Annotated[str, typer.Argument(help="run id")],
              grace: Annotated[float, typer.Option("--grace", help="seconds between SIGTERM and SIGKILL")] = 10.0,
              ctx_store: Store = None):
    """SIGTERM, then SIGKILL the run's process group after a grace period (on its own host; from any
    other, a request through the store, and a lost run that does not answer in time is marked killed)."""
    from core.runner.lifecycle import kill

    typer.echo(kill(open_store(ctx_store, create=False), run, grace=grace).message, err=True)


@runs_app.command("logs")
@global_options
def runs_logs(run: Annotated[str, typer.Argument(help="run id")],
              tail: Annotated[int, typer.Option("--tail", help="lines")] = 50,
              ctx_store: Store = None):
    """The last lines of a run's log (from its pods for a run on Kubernetes)."""
    from core.executors import log_tail
    from core.store import queries
    from core.text import printable

    # a log holds what the trainer and its libraries printed: no escape sequence of theirs reaches the terminal
    typer.echo(printable(log_tail(queries.get_run(open_store(ctx_store, create=False), run), tail), keep_newlines=True))


@runs_app.command("extend")
@global_options
def runs_extend(run: Annotated[str, typer.Argument(help="run id")],
                steps: Annotated[int, typer.Option("--steps", help="more optimizer steps")],
                ctx_store: Store = None):
    """Train a finished run further under the same id, from its last checkpoint, detached."""
    from core.runner.lifecycle import extend

    r = extend(open_store(ctx_store, create=False), run, steps)
    typer.echo(f"run {r.id}: {r.status}, now to step {r.total_steps}", err=True)
    typer.echo(str(r.id))


@runs_app.command("resume")
@global_options
def runs_resume(run: Annotated[str, typer.Argument(help="run id")],
                queue: Annotated[bool, typer.Option("--queue", help="queue it for a worker instead")] = False,
                checkpoint: Annotated[Optional[int], typer.Option("--checkpoint", help="continue from this step's checkpoint (newer ones are set aside)")] = None,
                restart: Annotated[bool, typer.Option("--restart", help="a run without a checkpoint: start it over from step 0")] = False,
                ctx_store: Store = None):
    """Continue a stopped/killed/crashed/failed run (same id) from its last good checkpoint, detached.
    A run that trained but has no checkpoint starts over only with --restart (or a yes on a terminal)."""
    from core.errors import NeedsRestart
    from core.runner.lifecycle import resume

    store = open_store(ctx_store, create=False)
    try:
        r = resume(store, run, queue=queue, checkpoint=checkpoint, restart=restart)
    except NeedsRestart as exc:
        if not (sys.stdin.isatty() and typer.confirm(f"run {exc.run_id} has no checkpoint; restart it from step 0?", err=True)):
            raise
        r = resume(store, run, queue=queue, checkpoint=checkpoint, restart=True)
    nnodes = r.config.get("nnodes", 1)
    if nnodes > 1 and not queue and r.executor == "torchrun":  # a cluster's job starts every node itself
        from core.runner.lifecycle import other_nodes_command

        typer.echo(f"run {r.id}: waiting for {nnodes - 1} more node(s); on each, with the same store and runs "
                   f"directory: {other_nodes_command(store, r)}", err=True)
    typer.echo(str(r.id))


@runs_app.command("rm")
@global_options
def runs_rm(run: Annotated[str, typer.Argument(help="run id")],
            yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
            ctx_store: Store = None):
    """Delete a run's records and its own directory (where the store says it is)."""
    from core.runner.lifecycle import remove
    from core.store import queries
    from core.text import printable

    store = open_store(ctx_store, create=False)
    target = queries.get_run(store, run)
    if not yes and not sys.stdin.isatty():  # no one to answer the question: say how, rather than abort (130)
        raise BadInput(f"runs rm {target.id}: not asked without a terminal; use -y to delete it")
    if not yes and not typer.confirm(f"delete run {target.id} ({printable(target.name)}) and "
                                     f"{printable(target.run_dir)}?", err=True):
        raise BadInput("not confirmed; nothing deleted")
    removed = remove(store, target.id)
    typer.echo(f"deleted run {removed.id}", err=True)


@runs_app.command("tag")
@global_options
def runs_tag(run: Annotated[str, typer.Argument(help="run id")],
             tags: Annotated[list[str], typer.Argument(help="tags to add")],
             remove: Annotated[bool, typer.Option("--remove", help="remove these tags instead")] = False,
             ctx_store: Store = None):
    """Add (or remove) tags."""
    from core.store import queries
    from core.text import printable

    store = open_store(ctx_store, create=False)
    r = queries.get_run(store, run)
    queries.add_tags(store, r.id, tags, remove=remove)
    typer.echo(printable(" ".join(queries.run_tags(store, [r.id]).get(r.id, []))))


@runs_app.command("note")
@global_options
def runs_note(run: Annotated[str, typer.Argument(help="run id")],
              text: Annotated[str, typer.Argument(help="the note")], ctx_store: Store = None):
    """Attach a note to a run."""
    from core.store import queries

    store = open_store(ctx_store, create=False)
    queries.add_note(store, queries.get_run(store, run).id, text)


@app.command()
@global_options
def export(fmt: Annotated[str, typer.Option("--format", help="csv|json|md (md: with --sweep)")] = "csv",
           sweep: Annotated[Optional[str], typer.Option("--sweep", help="the ranking table of this sweep, and a PNG figure per metric")] = None,
           metric: Annotated[Optional[str], typer.Option("--metric", help="with --sweep: the rank key")] = None,
           figures: Annotated[Optional[Path], typer.Option("--figures", help="with --sweep: folder for the figures [default: sweep-ID-figures]")] = None,
           mixed: Annotated[bool, typer.Option("--mixed", help="with --sweep: rank even with mixed evaluation settings")] = False,
           of_sweep: Annotated[Optional[str], typer.Option("--of-sweep", help="only the runs of this sweep")] = None,
           out: Annotated[Optional[Path], typer.Option("--out", help="write to this file, text exactly as stored [default: stdout, control characters shown as \\xNN]")] = None,
           ctx_store: Store = None):
    """All runs with their summaries, tags, notes and ISO-8601 times as CSV or JSON on stdout; with
    --sweep, the sweep's ranking (CSV, JSON or Markdown) and a PNG figure per metric (means with 95%
    CI bars)."""
    import csv
    import io
    from datetime import datetime, timezone

    from core.store import queries

    if fmt not in ("csv", "json", "md") or (fmt == "md" and sweep is None):
        raise BadInput(f"--format: unknown value {fmt!r} (choose from csv, json{', md' if sweep else ''})")
    if sweep is not None:
        if of_sweep is not None:
            raise BadInput("--of-sweep filters the runs export; --sweep exports a ranking: give one")
        _export_sweep(open_store(ctx_store, create=False), sweep, metric, fmt, figures, mixed, out)
        return
    store = open_store(ctx_store, create=False)
    if of_sweep is not None:
        of_sweep = queries.get_sweep(store, of_sweep).id
    records = queries.run_records(store, sweep_id=of_sweep)
    notes = queries.notes_by_run(store, [r["id"] for r in records])
    for r in records:
        r["notes"] = notes.get(r["id"], [])
        for key in ("created_at", "started_at", "ended_at", "heartbeat_at"):
            if r[key] is not None:
                r[key] = datetime.fromtimestamp(r[key], timezone.utc).isoformat(timespec="seconds")
    if fmt == "json":
        _write_export(json.dumps(records, indent=2, default=str) + "\n", out)
        return
    config_keys = sorted({k for r in records for k in r["config"]})
    fields = [k for k in records[0] if k not in ("config", "tags", "notes")] if records else ["id"]
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(fields + ["tags", "notes"] + [f"config.{k}" for k in config_keys])
    for r in records:
        writer.writerow([r[k] for k in fields] + [" ".join(r["tags"]), " | ".join(r["notes"])]
                        + [r["config"].get(k) for k in config_keys])
    _write_export(table.getvalue(), out)


def _write_export(text: str, out: Path | None) -> None:
    """An export to --out exactly as stored; on stdout (a terminal, often) with the control
    characters of names, notes, tags and config made visible, its CSV/Markdown lines kept."""
    from core.text import printable_lines

    if out is None:
        sys.stdout.write(printable_lines(text))
        return
    try:
        with open(out, "w", newline="", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write ({exc.strerror})") from None


def _export_sweep(store, sweep, metric, fmt: str, figures: Path | None, mixed: bool, out: Path | None) -> None:
    import csv
    import io

    from core.outputs import check_writable
    from core.rank.figure import interval_figure
    from core.rank.sweep import rank_sweep, ranking_record

    ranking = rank_sweep(store, sweep, metric, mixed)
    folder = figures or Path(f"sweep-{ranking.sweep_id}-figures")
    check_writable(folder, "--figures", folder=True)
    record = ranking_record(ranking)
    if fmt == "json":
        _write_export(json.dumps(record, indent=2, default=str) + "\n", out)
    elif fmt == "md":
        lines = ranking_lines(ranking)
        _write_export(f"**{lines[0]}**\n\n```\n" + "\n".join(lines[1:]) + "\n```\n", out)
    else:
        metrics = list(ranking.rankings)
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(ranking.factors + ["runs"] + [f"{m}.{k}" for m in metrics
                                                     for k in ("mean", "ci_low", "ci_high", "seeds", "tied_with_best")])
        for row in record["rows"]:
            cells = [row["config"][f] for f in ranking.factors] + [" ".join(map(str, row["runs"]))]
            for m in metrics:
                r = row[m]
                cells += [r["value"], r["ci_low"], r["ci_high"], r["seeds"], r["tied_with_best"]] if r else [""] * 5
            writer.writerow(cells)
        _write_export(table.getvalue(), out)
    for m, r in ranking.rankings.items():
        path = interval_figure(folder / f"sweep-{ranking.sweep_id}-{m}.png",
                               f"sweep {ranking.sweep_id}: {m} ({r.direction} is better)", ranking.factors, r.configs,
                               f"Evaluated with {r.settings}.")
        typer.echo(f"figure: {path}", err=True)


@app.command()
def keys(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False):
    """The TUI's keys: id, key (with your remaps), where it acts, what it does; and the settings
    file that remaps them ([keys] "runs.kill" = "ctrl+x"; [notifications] bell = false)."""
    from ddpm_tui.keys import KEYS, SCOPES, settings_path

    settings = tui_settings()
    rows = [{"id": k.id, "key": settings.keys.get(k.id) or k.display or k.key, "where": SCOPES[k.scope], "does": k.description} for k in KEYS]
    if as_json:
        echo_json({"settings": str(settings_path()), "keys": rows, "bell": settings.bell})
        return
    typer.echo(f"settings: {settings_path()}{'' if settings_path().exists() else ' (absent: defaults)'}")
    for r in rows:
        remapped = "*" if r["id"] in settings.keys else " "
        typer.echo(f"{r['id']:<22}{remapped}{r['key']:<14} {r['where']:<22} {r['does']}")


# ---- entry point ---------------------------------------------------------------------------------
class PrintableFormatter(logging.Formatter):
    """Warnings on the terminal with control characters made visible: they quote paths and values."""

    def format(self, record: logging.LogRecord) -> str:
        from core.text import printable

        return printable(super().format(record))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning every error into one line on stderr and the contract's exit code."""
    # our own warnings on the terminal (a library's are noise here: what fails is reported by us);
    # errors are raised and reported once, below
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.addFilter(lambda record: record.levelno < logging.ERROR and record.name.split(".")[0] in ("ddpm_tui", "core"))
    console.setFormatter(PrintableFormatter("warning: %(message)s"))
    logging.getLogger().addHandler(console)
    try:
        _run(argv)
    finally:
        logging.getLogger().removeHandler(console)


def _run(argv: list[str] | None) -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="ddpm-tui", standalone_mode=False)
    except click_errors.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx else ""
        _fail(f"{where}{exc.format_message()}", 2, argv)
    except typer.Abort:
        _fail("aborted", 130, argv)
    except BadInput as exc:
        _fail(str(exc), 2, argv)
    except WorkFailed as exc:
        _fail(str(exc), 1, argv)
    except SQLAlchemyError as exc:
        from core.store.db import is_locked, store_failure

        message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if is_locked(exc):
            _fail("database is busy: another process kept it locked through every retry; nothing was "
                  "changed, try again", 1, argv)
        if failure := store_failure(exc, _given_store_url(argv)):
            _fail(str(failure), 2 if isinstance(failure, BadInput) else 1, argv)
        _fail(f"database: {message}", 1, argv)
    except Exception as exc:  # a bug: one line here; a run's own log keeps the traceback
        if os.environ.get("DDPM_TUI_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0]
        _fail(f"{exc.__class__.__name__}: {first} (an internal error; DDPM_TUI_DEBUG=1 shows the traceback)", 1, argv)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int, argv: list[str] | None) -> NoReturn:
    """End with the one error line: the passwords of every database URL the command was given
    hidden, and control characters (a path or value holding terminal escapes) made visible."""
    from core.store.db import hide_secrets
    from core.text import printable

    print(f"error: {printable(hide_secrets(message, _given_store_url(argv)))}", file=sys.stderr)
    sys.exit(code)


def _given_store_url(argv: list[str] | None) -> str:
    """The store URL of this command line (its last --db, before or after the command), else of
    the environment, else the default: read from the arguments, since an error may come before
    or during their parsing."""
    args = sys.argv[1:] if argv is None else argv
    given = None
    for i, arg in enumerate(args):
        if arg == "--db" and i + 1 < len(args):
            given = args[i + 1]
        elif arg.startswith("--db="):
            given = arg.removeprefix("--db=")
    return store_url(given)

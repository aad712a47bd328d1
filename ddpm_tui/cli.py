"""The `ddpm-tui` command line. Errors: one line on stderr; exit 2 for bad input, 1 for failures."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from core.errors import BadInput, WorkFailed
from ddpm_tui.options import global_options, train_options

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="A terminal lab for denoising diffusion models of PCam patches.")
data_app = typer.Typer(help="Datasets: build the demo set, check a folder.", no_args_is_help=True)
app.add_typer(data_app, name="data")

Store = tuple[str, Path]


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option("--db", envvar="DDPM_TUI_DB", help="database URL")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", envvar="DDPM_TUI_RUNS", help="runs directory")] = None,
):
    """Open the TUI when no command is given."""
    ctx.obj = {"db": db, "runs_dir": runs_dir}
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


def open_store(ctx_store: Store):
    from core.store import Store as StoreClass

    return StoreClass(ctx_store[0])


def echo_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# ---- data -------------------------------------------------------------------------------------
@data_app.command("demo")
def data_demo(out: Annotated[Path, typer.Argument(help="folder to write the PCam-layout h5 files to")]):
    """Write the offline demo dataset (PCam h5 layout) to OUT."""
    from core.data.demo import write_demo_dataset

    counts = write_demo_dataset(out)
    typer.echo(f"demo dataset written to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@data_app.command("check")
def data_check(
    path: Annotated[str, typer.Argument(help="dataset folder, or 'demo'")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
):
    """Validate a dataset: layout, counts per split and class, problems."""
    from core.data.check import check_dataset
    from core.train.run import resolve_data

    report = check_dataset(resolve_data(path) if path == "demo" else path)
    if as_json:
        echo_json(report)
    else:
        typer.echo(f"{report['path']}: {report['layout']} layout")
        for split, c in report["splits"].items():
            typer.echo(f"  {split:<6} {c['n']:>8} patches  cancerous {c['cancerous']:>8}  "
                       f"non_cancerous {c['non_cancerous']:>8}")
    if report["problems"]:
        for problem in report["problems"]:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)


# ---- training ----------------------------------------------------------------------------------
@app.command()
@train_options
@global_options
def train(
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file of training options")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="continue this run id from its last checkpoint")] = None,
    train_values: dict = None, ctx_store: Store = None,
):
    """Train in the foreground with a progress bar; the run is recorded in the store."""
    from core.config import build_config
    from core.train.run import check_resumable, execute_run, new_run

    store = open_store(ctx_store)
    if resume is not None:
        given = [k for k, v in train_values.items() if v is not None]
        if given or config:
            raise BadInput(f"--resume continues a run with its stored config; drop --{given[0] if given else 'config'}")
        run = check_resumable(store, resume)
        run_id, is_resume = run.id, True
    else:
        cfg = build_config(train_values, config)
        run = new_run(store, ctx_store[1], cfg)
        run_id, is_resume = run.id, False
    typer.echo(f"run {run_id}: {run.run_dir}", err=True)
    outcome = _train_with_progress(store, run_id, is_resume)
    final = _run_row(store, run_id)
    typer.echo(f"run {run_id} {outcome} at step {final.step}/{final.total_steps}", err=True)
    if outcome == "stopped":
        typer.echo(f"resume with: ddpm-tui train --resume {run_id}", err=True)


def _run_row(store, run_id):
    from core.store.queries import get_run

    return get_run(store, run_id)


def _train_with_progress(store, run_id: int, resume: bool) -> str:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from core.train.run import execute_run

    console = Console(stderr=True)
    columns = [TextColumn("step {task.completed:>7.0f}/{task.total:.0f}"), BarColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} img/s"),
               TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        task = progress.add_task("train", total=None, loss="-", rate="-")

        def on_step(stats):
            loss = "nan" if stats.loss is None else f"{stats.loss:.4f}"
            progress.update(task, completed=stats.step, total=stats.total, loss=loss, rate=f"{stats.img_per_s:.1f}")
            if not console.is_terminal and (stats.step % 50 == 0 or stats.step == stats.total):
                console.print(f"step {stats.step}/{stats.total} loss {loss} {stats.img_per_s:.1f} img/s "
                              f"eta {stats.eta_s:.0f}s")

        return execute_run(store, run_id, on_step=on_step, resume=resume)


# ---- sampling ----------------------------------------------------------------------------------
@app.command()
@global_options
def sample(
    run: Annotated[str, typer.Argument(help="run id")],
    out: Annotated[Path, typer.Option("--out", help="PNG grid to write")],
    n: Annotated[int, typer.Option("--n", help="number of samples")] = 16,
    sampler: Annotated[str, typer.Option("--sampler", help="ddpm|ddim")] = "ddim",
    steps: Annotated[int, typer.Option("--steps", help="sampling steps (ddpm: respaced when < T)")] = 50,
    eta: Annotated[float, typer.Option("--eta", help="DDIM eta (0 = deterministic)")] = 0.0,
    guidance: Annotated[float, typer.Option("--guidance", help="classifier-free guidance weight w")] = 0.0,
    class_name: Annotated[Optional[str], typer.Option("--class", help="cancerous|non_cancerous (conditional runs)")] = None,
    gif: Annotated[Optional[Path], typer.Option("--gif", help="also write the reverse process as a GIF")] = None,
    seed: Annotated[int, typer.Option("--seed", help="sampling seed")] = 0,
    scale: Annotated[int, typer.Option("--scale", help="enlarge each pixel (0 = to about 96 px)")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto|cpu|cuda")] = "auto",
    ctx_store: Store = None,
):
    """Draw samples from a run's EMA weights into a PNG grid (and a GIF of the reverse process)."""
    from core.inference import sample_run

    store = open_store(ctx_store)
    written = sample_run(store, run, out, n=n, sampler=sampler, steps=steps, eta=eta, guidance=guidance,
                         class_name=class_name, gif=gif, seed=seed, scale=scale, device=device)
    for path in written:
        typer.echo(str(path))


# ---- entry point ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning every error into one line on stderr and the contract's exit code."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("warning: %(message)s"))
    logging.getLogger().addHandler(console)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="ddpm-tui", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx else ""
        print(f"error: {where}{exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except click.exceptions.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except WorkFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

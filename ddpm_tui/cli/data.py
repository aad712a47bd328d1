"""`ddpm-tui data`: build the demo dataset, check a dataset folder."""

from pathlib import Path
from typing import Annotated

import typer

from core.text import printable
from ddpm_tui.cli.render import echo_json

app = typer.Typer(help="Datasets: build the demo set, check a folder.", no_args_is_help=True)


@app.command("demo")
def data_demo(out: Annotated[Path, typer.Argument(help="folder to write the PCam-layout h5 files to")]):
    """Write the offline demo dataset (PCam h5 layout) to OUT."""
    from core.data.demo import write_demo_dataset
    from core.outputs import check_writable

    check_writable(out, "data demo", folder=True)
    counts = write_demo_dataset(out)
    typer.echo(f"demo dataset written to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@app.command("check")
def data_check(
    path: Annotated[str, typer.Argument(help="dataset folder, or 'demo'")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
):
    """Validate a dataset: layout, counts per split and class, problems."""
    from core.data import cache_dir, resolve_data
    from core.data.check import check_dataset

    report = check_dataset(resolve_data(path) if path == "demo" else path, cache=cache_dir())
    if as_json:
        echo_json(report)
    else:
        typer.echo(f"{printable(report['path'])}: {report['layout']} layout")
        if "synthetic" in report:
            made = report["synthetic"]
            typer.echo(f"  synthetic: drawn by run {made['run']} ({printable(str(made['run_name']))}) from step "
                       f"{made['checkpoint_step']} with {made['sampler']} {made['steps']} steps, guidance "
                       f"{made['guidance']:g}, seed {made['seed']}{'' if made['complete'] else ' (unfinished)'}; "
                       f"classifiers trained on it are scored on {printable(str(made['source_data']))}")
        for split, c in report["splits"].items():
            typer.echo(f"  {split:<6} {c['n']:>8} patches  cancerous {c['cancerous']:>8}  "
                       f"non_cancerous {c['non_cancerous']:>8}")
    if report["problems"]:
        for problem in report["problems"][:20]:
            typer.echo(f"error: {printable(problem)}", err=True)
        if len(report["problems"]) > 20:
            typer.echo(f"error: ... and {len(report['problems']) - 20} more problems", err=True)
        raise typer.Exit(2)

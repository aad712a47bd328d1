"""`export`: every run as CSV or JSON, or a sweep's ranking as CSV, JSON or Markdown with figures."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import BadInput
from ddpm_tui.cli.render import ranking_csv, ranking_markdown, runs_csv, write_export
from ddpm_tui.options import Where, global_options


@global_options
def export(fmt: Annotated[str, typer.Option("--format", help="csv|json|md (md: with --sweep)")] = "csv",
           sweep: Annotated[Optional[str], typer.Option("--sweep", help="the ranking table of this sweep, and a PNG figure per metric")] = None,
           metric: Annotated[Optional[str], typer.Option("--metric", help="with --sweep: the rank key")] = None,
           figures: Annotated[Optional[Path], typer.Option("--figures", help="with --sweep: folder for the figures [default: sweep-ID-figures]")] = None,
           mixed: Annotated[bool, typer.Option("--mixed", help="with --sweep: rank even with mixed evaluation settings")] = False,
           of_sweep: Annotated[Optional[str], typer.Option("--of-sweep", help="only the runs of this sweep")] = None,
           out: Annotated[Optional[Path], typer.Option("--out", help="write to this file, text exactly as stored [default: stdout, control characters shown as \\xNN]")] = None,
           where: Where = None):
    """All runs with their summaries, tags, notes and ISO-8601 times as CSV or JSON on stdout; with
    --sweep, the sweep's ranking (CSV, JSON or Markdown) and a PNG figure per metric (means with 95%
    CI bars)."""
    if fmt not in ("csv", "json", "md") or (fmt == "md" and sweep is None):
        raise BadInput(f"--format: unknown value {fmt!r} (choose from csv, json{', md' if sweep else ''})")
    lab = where.lab(create=False)
    if sweep is not None:
        if of_sweep is not None:
            raise BadInput("--of-sweep filters the runs export; --sweep exports a ranking: give one")
        export_sweep(lab, sweep, metric, fmt, figures, mixed, out)
        return
    records = lab.export_records(of_sweep)
    write_export(json.dumps(records, indent=2, default=str) + "\n" if fmt == "json" else runs_csv(records), out)


def export_sweep(lab, sweep, metric, fmt: str, figures: Path | None, mixed: bool, out: Path | None) -> None:
    """The sweep's ranking in `fmt`, and one PNG figure per metric (means with 95% CI bars)."""
    from core.outputs import check_writable
    from core.rank.figure import interval_figure
    from core.rank.sweep import ranking_record

    ranking = lab.rank(sweep, metric, mixed)
    folder = figures or Path(f"sweep-{ranking.sweep_id}-figures")
    check_writable(folder, "--figures", folder=True)
    record = ranking_record(ranking)
    if fmt == "json":
        write_export(json.dumps(record, indent=2, default=str) + "\n", out)
    elif fmt == "md":
        write_export(ranking_markdown(ranking), out)
    else:
        write_export(ranking_csv(ranking, record), out)
    for m, r in ranking.rankings.items():
        path = interval_figure(folder / f"sweep-{ranking.sweep_id}-{m}.png",
                               f"sweep {ranking.sweep_id}: {m} ({r.direction} is better)", ranking.factors, r.configs,
                               f"Evaluated with {r.settings}.")
        typer.echo(f"figure: {path}", err=True)

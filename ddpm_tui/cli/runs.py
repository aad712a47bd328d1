"""`ddpm-tui runs`: inspect and control runs."""

import sys
from typing import Annotated, Optional

import typer

from core.errors import BadInput, NeedsRestart
from core.text import printable
from ddpm_tui.cli.render import echo_json, run_report_lines, runs_lines
from ddpm_tui.options import Where, global_options

app = typer.Typer(help="Inspect and control runs.", no_args_is_help=True)


@app.command("list")
@global_options
def runs_list(
    status: Annotated[Optional[str], typer.Option("--status", help="only runs with this status")] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="only runs of this sweep")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    where: Where = None,
):
    """Every run with status, progress and loss."""
    records = where.lab(create=False).run_records(status, sweep)
    if as_json:
        echo_json([{k: v for k, v in r.items() if k != "config"} for r in records])
        return
    for line in runs_lines(records):
        typer.echo(line)


@app.command("show")
@global_options
def runs_show(run: Annotated[str, typer.Argument(help="run id")],
              as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
              where: Where = None):
    """One run: config, status history, summaries, notes, artifacts (and, for a run on a cluster, what
    the cluster says of its job)."""
    record = where.lab(create=False).run_report(run)
    if as_json:
        echo_json(record)
        return
    for line in run_report_lines(record):
        typer.echo(line)


@app.command("stop")
@global_options
def runs_stop(run: Annotated[str, typer.Argument(help="run id")],
              wait: Annotated[float, typer.Option("--wait", help="seconds to wait for the checkpoint")] = 0.0,
              where: Where = None):
    """Stop a running run: it checkpoints and becomes `stopped` (SIGTERM on its own host; a request
    through the store, which its trainer reads with its heartbeat, from any other)."""
    typer.echo(where.lab(create=False).stop(run, wait=wait).message, err=True)


@app.command("kill")
@global_options
def runs_kill(run: Annotated[str, typer.Argument(help="run id")],
              grace: Annotated[float, typer.Option("--grace", help="seconds between SIGTERM and SIGKILL")] = 10.0,
              where: Where = None):
    """SIGTERM, then SIGKILL the run's process group after a grace period (on its own host; from any
    other, a request through the store, and a lost run that does not answer in time is marked killed)."""
    typer.echo(where.lab(create=False).kill(run, grace=grace).message, err=True)


@app.command("logs")
@global_options
def runs_logs(run: Annotated[str, typer.Argument(help="run id")],
              tail: Annotated[int, typer.Option("--tail", help="lines")] = 50,
              where: Where = None):
    """The last lines of a run's log (from its pods for a run on Kubernetes)."""
    # a log holds what the trainer and its libraries printed: no escape sequence of theirs reaches the terminal
    typer.echo(printable(where.lab(create=False).log_tail(run, tail), keep_newlines=True))


@app.command("extend")
@global_options
def runs_extend(run: Annotated[str, typer.Argument(help="run id")],
                steps: Annotated[int, typer.Option("--steps", help="more optimizer steps")],
                where: Where = None):
    """Train a finished run further under the same id, from its last checkpoint, detached."""
    r = where.lab(create=False).extend(run, steps)
    typer.echo(f"run {r.id}: {r.status}, now to step {r.total_steps}", err=True)
    typer.echo(str(r.id))


@app.command("resume")
@global_options
def runs_resume(run: Annotated[str, typer.Argument(help="run id")],
                queue: Annotated[bool, typer.Option("--queue", help="queue it for a worker instead")] = False,
                checkpoint: Annotated[Optional[int], typer.Option("--checkpoint", help="continue from this step's checkpoint (newer ones are set aside)")] = None,
                restart: Annotated[bool, typer.Option("--restart", help="a run without a checkpoint: start it over from step 0")] = False,
                where: Where = None):
    """Continue a stopped/killed/crashed/failed run (same id) from its last good checkpoint, detached.
    A run that trained but has no checkpoint starts over only with --restart (or a yes on a terminal)."""
    lab = where.lab(create=False)
    try:
        r = lab.resume(run, queue=queue, checkpoint=checkpoint, restart=restart)
    except NeedsRestart as exc:
        if not (sys.stdin.isatty() and typer.confirm(f"run {exc.run_id} has no checkpoint; restart it from step 0?", err=True)):
            raise
        r = lab.resume(run, queue=queue, checkpoint=checkpoint, restart=True)
    nnodes = r.config.get("nnodes", 1)
    if nnodes > 1 and not queue and r.executor == "torchrun":  # a cluster's job starts every node itself
        typer.echo(f"run {r.id}: waiting for {nnodes - 1} more node(s); on each, with the same store and runs "
                   f"directory: {lab.other_nodes_command(r)}", err=True)
    typer.echo(str(r.id))


@app.command("rm")
@global_options
def runs_rm(run: Annotated[str, typer.Argument(help="run id")],
            yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
            where: Where = None):
    """Delete a run's records and its own directory (where the store says it is)."""
    lab = where.lab(create=False)
    target = lab.run(run)
    if not yes and not sys.stdin.isatty():  # no one to answer the question: say how, rather than abort (130)
        raise BadInput(f"runs rm {target.id}: not asked without a terminal; use -y to delete it")
    if not yes and not typer.confirm(f"delete run {target.id} ({printable(target.name)}) and "
                                     f"{printable(target.run_dir)}?", err=True):
        raise BadInput("not confirmed; nothing deleted")
    removed = lab.delete(target.id)
    typer.echo(f"deleted run {removed.id}", err=True)


@app.command("tag")
@global_options
def runs_tag(run: Annotated[str, typer.Argument(help="run id")],
             tags: Annotated[list[str], typer.Argument(help="tags to add")],
             remove: Annotated[bool, typer.Option("--remove", help="remove these tags instead")] = False,
             where: Where = None):
    """Add (or remove) tags."""
    typer.echo(printable(" ".join(where.lab(create=False).tag(run, tags, remove=remove))))


@app.command("note")
@global_options
def runs_note(run: Annotated[str, typer.Argument(help="run id")],
              text: Annotated[str, typer.Argument(help="the note")], where: Where = None):
    """Attach a note to a run."""
    where.lab(create=False).note(run, text)

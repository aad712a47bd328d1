"""The `ddpm-tui` command line: the Typer app, its commands from the modules beside this one, and
main(). Errors: one line on stderr; exit 2 for bad input, 1 for failures. Commands reach the store,
the runs and the trainer only through core.services."""

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
import typer.core

from core.errors import BadInput, WorkFailed
from core.locations import RUNS_ENV, STORE_ENV, store_url
from core.locations import runs_dir as locations_runs_dir
from core.text import printable
from ddpm_tui.cli import cluster, data, evaluate, export, interactive, runs, synthetic, train
from ddpm_tui.options import RootOptions

try:  # typer >= 0.22 vendors click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

# Typer escapes "[default: x]" as "\[default: x]" for Rich whenever Rich is importable, also under
# rich_markup_mode=None (click's plain help, ours), which then prints the backslash.
typer.core.HAS_RICH = False

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="A terminal lab for denoising diffusion models of PCam patches.")
app.add_typer(data.app, name="data")
app.add_typer(runs.app, name="runs")
app.command()(train.demo)
app.command()(train.train)
app.command()(evaluate.sample)
app.command()(synthetic.synth)
app.add_typer(evaluate.classifier_app, name="classifier")
app.command("eval")(evaluate.eval_runs)
app.command()(evaluate.rank)
app.command()(cluster.launch)
app.command()(train.ablate)
app.command()(train.worker)
app.command()(export.export)
app.command()(interactive.keys)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option("--db", envvar=STORE_ENV, help="database URL")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", envvar=RUNS_ENV, help="runs directory")] = None,
):
    """Open the TUI when no command is given."""
    ctx.obj = RootOptions(db, runs_dir)
    if ctx.invoked_subcommand is None:
        interactive.open_tui(store_url(db), locations_runs_dir(runs_dir), interactive.tui_settings())


# ---- entry point ---------------------------------------------------------------------------------
class PrintableFormatter(logging.Formatter):
    """Warnings on the terminal with control characters made visible: they quote paths and values."""

    def format(self, record: logging.LogRecord) -> str:
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
    except Exception as exc:
        from core.services.failures import database_failure

        if failure := database_failure(exc, _given_store_url(argv)):
            _fail(*failure, argv)
        # a bug: one line here; a run's own log keeps the traceback
        if os.environ.get("DDPM_TUI_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0]
        _fail(f"{exc.__class__.__name__}: {first} (an internal error; DDPM_TUI_DEBUG=1 shows the traceback)", 1, argv)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int, argv: list[str] | None) -> NoReturn:
    """End with the one error line: the passwords of every database URL the command was given
    hidden, and control characters (a path or value holding terminal escapes) made visible."""
    from core.services.failures import without_secrets

    print(f"error: {printable(without_secrets(message, _given_store_url(argv)))}", file=sys.stderr)
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

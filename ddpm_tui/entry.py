"""The `ddpm-tui` command. When it will open the TUI (no command, only --db/--runs-dir), the
terminal's graphics probe starts before anything else is imported, so its wait for the terminal's
answers overlaps the CLI's imports instead of following them."""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager

ROOT_VALUE_OPTIONS = ("--db", "--runs-dir")


def opens_tui(args: list[str]) -> bool:
    """Whether these arguments open the TUI: nothing but the root options and their values."""
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg.split("=", 1)[0] not in ROOT_VALUE_OPTIONS:
            return False
        if "=" not in arg:
            if not rest:
                return False
            rest.pop(0)
    return True


@contextmanager
def imports_uncollected(module: str):
    """The first import of `module` (and what it imports) made without the cyclic garbage
    collector, whose objects it then never scans again.

    Start-up builds hundreds of thousands of long-lived objects (modules, classes, functions,
    SQLAlchemy's and Textual's tables) and frees next to none, yet the collector, run after every
    700 new containers, walks them again and again: 8% of the instructions of `runs list --json`
    and 10% of the TUI's imports (BENCHMARKS.md, issue 19). `gc.freeze` moves what the imports
    made out of every later collection, so the TUI's refreshes do not scan it either. Once
    `module` is imported this does nothing: a process that runs many commands (the test suite)
    would otherwise freeze, and so never free, the cyclic garbage each one left."""
    if module in sys.modules:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> None:
    if opens_tui(sys.argv[1:] if argv is None else argv):
        from ddpm_tui.terminal_probe import start_probe

        start_probe()
    with imports_uncollected("ddpm_tui.cli"):
        from ddpm_tui.cli import main as cli_main
    cli_main(argv)

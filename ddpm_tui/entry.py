"""The `ddpm-tui` command. When it will open the TUI (no command, only --db/--runs-dir), the
terminal's graphics probe starts before anything else is imported, so its wait for the terminal's
answers overlaps the CLI's imports instead of following them."""

from __future__ import annotations

import sys

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


def main(argv: list[str] | None = None) -> None:
    if opens_tui(sys.argv[1:] if argv is None else argv):
        from ddpm_tui.terminal_probe import start_probe

        start_probe()
    from ddpm_tui.cli import main as cli_main

    cli_main(argv)

"""The CLI's door to the TUI: the user's settings, checked first, and opening the app; `keys`."""

from pathlib import Path
from typing import Annotated

import typer

from ddpm_tui.cli.render import echo_json
from ddpm_tui.entry import imports_uncollected


def tui_settings():
    """The user's keys and notification settings, checked before the TUI takes the terminal."""
    from ddpm_tui.keys import load_settings

    return load_settings()


def open_tui(db_url: str, runs_dir: Path, settings, open_run_id: int | None = None) -> None:
    """Open the TUI. While the terminal's graphics probe waits for its answers (ddpm_tui.terminal_probe),
    the app is imported and the first read of the runs starts, so it is there when the app paints."""
    from ddpm_tui.terminal_probe import start_probe

    probe = start_probe()
    with imports_uncollected("ddpm_tui.tui.app"):
        from ddpm_tui.tui.app import prepare_app

    app = prepare_app(db_url, runs_dir, open_run_id, settings)
    probe.join()
    app.run()


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

"""`?`: the keys live on the screen underneath, the app's own first, grouped by where they act, in
two columns so the whole list fits an 80x24 terminal."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ddpm_tui.keys import SCOPES
from ddpm_tui.tui.widgets.plain import plain

COLUMN_WIDTH = 34


def describe_bindings(active) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(group title, [(key, description), ...]), ...] of the active bindings: the app's group
    first, then the others in registry order; bindings without a registry id are Textual's own
    (cursor keys and the like) and are left out, except the command palette."""
    groups: dict[str, list[tuple[str, str]]] = {}
    seen = set()
    for key, active_binding in active.items():
        binding = active_binding.binding
        scope = (binding.id or "").split(".")[0]
        if scope not in SCOPES:
            if binding.action != "command_palette":
                continue
            scope = "app"
        if (scope, binding.action) in seen:
            continue
        seen.add((scope, binding.action))
        groups.setdefault(scope, []).append((binding.key_display or key, binding.description or binding.action))
    return [(SCOPES[s], groups[s]) for s in SCOPES if s in groups]


def two_columns(groups: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """The groups as lines, split into a left and a right column of about equal length."""
    lines = []
    for title, rows in groups:
        lines.append(title)
        lines += [f"  {key[:9]:<9} {description}"[:COLUMN_WIDTH] for key, description in rows]
    half = (len(lines) + 1) // 2
    left, right = lines[:half], lines[half:]
    return "\n".join(f"{a:<{COLUMN_WIDTH}}  {b}".rstrip() for a, b in zip(left, right + [""] * (half - len(right))))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, groups: list[tuple[str, list[tuple[str, str]]]], title: str):
        super().__init__()
        self.groups, self.title_text = groups, title

    def compose(self) -> ComposeResult:
        footer = "ctrl+p: any of these by name · remap keys: see `ddpm-tui keys`"
        with VerticalScroll(classes="dialog help"):
            yield Static(plain(f"{self.title_text}\n\n{two_columns(self.groups)}\n\n{footer}", keep_newlines=True),
                         id="help-text")

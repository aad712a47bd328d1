"""`?`: the keys of the screen underneath and of the app, generated from their bindings."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def describe_bindings(active) -> list[tuple[str, str]]:
    """(key, description) pairs of the active bindings, in order, without duplicates."""
    rows, seen = [], set()
    for key, active_binding in active.items():
        binding = active_binding.binding
        label = binding.description or binding.action
        if (binding.action, label) in seen:
            continue
        seen.add((binding.action, label))
        rows.append((binding.key_display or key, label))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, rows: list[tuple[str, str]], title: str):
        super().__init__()
        self.rows, self.title_text = rows, title

    def compose(self) -> ComposeResult:
        lines = [f"[b]{self.title_text}[/b]", ""] + [f"  [b]{k:<12}[/b] {d}" for k, d in self.rows]
        with VerticalScroll(classes="dialog help"):
            yield Static("\n".join(lines), id="help-text")

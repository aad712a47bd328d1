"""Launch a run (form) (placeholder until built)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class LaunchScreen(Screen):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Launch a run (form): not built yet")
        yield Footer()

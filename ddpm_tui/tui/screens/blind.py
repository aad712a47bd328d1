"""Blind test (placeholder until built)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class BlindTestScreen(Screen):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Blind test: not built yet")
        yield Footer()

"""GPUs (placeholder until built)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class GpuScreen(Screen):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("GPUs: not built yet")
        yield Footer()

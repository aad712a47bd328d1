"""The latest sample grid drawn in the terminal: Kitty/Sixel where supported, half-blocks otherwise."""

from __future__ import annotations

from pathlib import Path

from textual.containers import Vertical
from textual.widgets import Static
from textual_image.widget import Image


class SampleView(Vertical):
    DEFAULT_CSS = "SampleView { height: auto; } SampleView Image { width: auto; height: 14; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.path: Path | None = None

    def compose(self):
        yield Static("no samples yet", id="sample-caption")
        yield Image(None, id="sample-image")

    def show(self, path: Path | None) -> None:
        if path == self.path:
            return
        self.path = path
        caption = self.query_one("#sample-caption", Static)
        if path is None or not path.exists():
            caption.update("no samples yet")
            self.query_one("#sample-image", Image).image = None
            return
        caption.update(f"samples: {path.name}")
        self.query_one("#sample-image", Image).image = str(path)

"""A sample grid drawn in the terminal (Kitty/Sixel where supported, half-blocks otherwise), sized
by the terminal, or the run's reverse-process GIF played frame by frame; and a grid zoomed to the
whole screen."""

from __future__ import annotations

from pathlib import Path

from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static
from textual_image.widget import Image

FRAME_SECONDS = 0.15


class SampleView(Vertical):
    DEFAULT_CSS = "SampleView { height: auto; } SampleView Image { width: auto; height: 45vh; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.path: Path | None = None
        self.frames: list = []
        self.frame = 0
        self._timer = None

    def compose(self):
        yield Static("no samples yet", id="sample-caption")
        yield Image(None, id="sample-image")

    @property
    def playing(self) -> bool:
        return self._timer is not None

    def show(self, path: Path | None, caption: str | None = None) -> None:
        if self.playing:
            return
        label = self.query_one("#sample-caption", Static)
        if path is None or not path.exists():
            self.path = None
            label.update("no samples yet")
            self.query_one("#sample-image", Image).image = None
            return
        label.update(caption or f"samples: {path.name}")
        if path != self.path:
            self.path = path
            self.query_one("#sample-image", Image).image = str(path)

    def play(self, gif: Path) -> None:
        """Loop the frames of a reverse-process GIF (x_t beside the predicted x_0) until stop()."""
        from PIL import Image as PILImage
        from PIL import ImageSequence

        self.stop()
        with PILImage.open(gif) as img:
            self.frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(img)]
        self.frame = 0
        self.query_one("#sample-caption", Static).update(f"reverse process: {gif.name} (x_t | predicted x_0)")
        self._timer = self.set_interval(FRAME_SECONDS, self._next_frame)
        self._next_frame()

    def _next_frame(self) -> None:
        self.query_one("#sample-image", Image).image = self.frames[self.frame]
        self.frame = (self.frame + 1) % len(self.frames)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
            path, self.path = self.path, None
            self.show(path)


class ZoomedGrid(ModalScreen[None]):
    """One sample grid over the whole terminal; Esc or z closes it."""

    # opaque: the page underneath must not show beside a grid narrower than the terminal
    DEFAULT_CSS = ("ZoomedGrid { align: center middle; background: $background; } "
                   "ZoomedGrid Image { width: auto; height: 1fr; } ZoomedGrid Static { height: 1; }")
    BINDINGS = [Binding("escape,z,q", "dismiss", "Close")]

    def __init__(self, path: Path, caption: str):
        super().__init__()
        self.path, self.caption = path, caption

    def compose(self):
        yield Static(self.caption, markup=False)
        yield Image(str(self.path), id="zoomed-image")

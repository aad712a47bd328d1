"""The footer of every screen."""

from __future__ import annotations

from textual.widgets import Footer


class KeysFooter(Footer):
    """Textual's footer, compact and without the palette's key on the right (`?` lists ctrl+p), so
    an 80-column terminal shows every key a screen puts in its footer."""

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)

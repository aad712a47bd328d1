"""The base of the app's screens: the app's own keys (quit, help, the views) come first in the
footer and in the help, so `q` and `?` stay visible in an 80-column terminal."""

from __future__ import annotations

from textual.screen import Screen


class AppScreen(Screen):
    @property
    def active_bindings(self):
        bindings = super().active_bindings
        first = {key: b for key, b in bindings.items() if (b.binding.id or "").startswith("app.")}
        return {**first, **{key: b for key, b in bindings.items() if key not in first}}

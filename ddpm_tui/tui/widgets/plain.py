"""Data shown as data: names, tags, notes, log lines and error texts are never read as markup, and
the control characters in them (ESC starting a colour or OSC sequence, BEL, ...) are made visible."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from core.text import printable
from ddpm_tui.keys import bindings


def plain(value: object, style: str = "", keep_newlines: bool = False) -> Text:
    """A Text of `value` as it is: markup such as [/] or [link=...] stays literal text."""
    if isinstance(value, Text):
        if value.plain == printable(value.plain, keep_newlines):
            return value
        return Text(printable(value.plain, keep_newlines), style=value.style)
    return Text(printable(value, keep_newlines), style=style)


class PlainTable(DataTable):
    """A DataTable whose cells and labels are plain text (DataTable reads strings as markup)."""

    def add_column(self, label, *args, **kwargs):
        return super().add_column(plain(label), *args, **kwargs)

    def add_row(self, *cells, **kwargs):
        return super().add_row(*(plain(c) for c in cells), **kwargs)

    def update_cell(self, row_key, column_key, value, **kwargs):
        return super().update_cell(row_key, column_key, plain(value), **kwargs)

    def update_cell_at(self, coordinate, value, **kwargs):
        return super().update_cell_at(coordinate, plain(value), **kwargs)


class ListTable(PlainTable):
    """A PlainTable that is a list to move through: vim keys (the "list" scope of ddpm_tui.keys)
    besides the arrows."""

    BINDINGS = bindings("list")

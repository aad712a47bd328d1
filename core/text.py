"""Text from users and files shown back to people: names, tags, notes, log lines, error texts."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and C1 controls (0x9b is a one-byte CSI on some terminals)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object, keep_newlines: bool = False) -> str:
    """`text` with every control character that a terminal would act on (ESC starting a colour,
    cursor or OSC sequence, BEL, backspace, carriage return, ...) shown as a visible \\xNN escape.
    Newlines become \\n too unless `keep_newlines`; tabs stay."""
    text = str(text)
    if not keep_newlines:
        text = text.replace("\n", "\\n")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def printable_lines(text: str) -> str:
    """Text of several lines (CSV ends its lines with \\r\\n) with every control character but the
    line ends and tabs made visible, as `printable` does."""
    return "\r\n".join(printable(part, keep_newlines=True) for part in text.split("\r\n"))

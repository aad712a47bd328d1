"""textual-image asks the terminal about its graphics support (and cell size) when imported, and
waits up to a tenth of a second per question for the answers. That must happen before the app owns
the terminal (answers would arrive as key presses); done in a thread, the wait overlaps start-up."""

from __future__ import annotations

import importlib
import threading

_probe: threading.Thread | None = None


def start_probe() -> threading.Thread:
    """Start the probe once (later calls return the running one)."""
    global _probe
    if _probe is None:
        _probe = threading.Thread(target=importlib.import_module, args=("textual_image.widget",), daemon=True,
                                  name="terminal-probe")
        _probe.start()
    return _probe

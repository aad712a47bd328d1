"""How the TUI's background work fails: in one place. A worker-thread method wrapped by `reported`
turns any exception into the app's error toast (App.report_error) instead of a crash."""

from __future__ import annotations

import functools
from typing import Callable


def reported(what: str | Callable[..., str]):
    """`what` names the work in the toast ("reading sweeps"); a callable gets the method's own
    arguments (`lambda self, run_id: f"evaluate run {run_id}"`)."""
    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                label = what(self, *args, **kwargs) if callable(what) else what
                app = getattr(self, "app", self)
                app.call_from_thread(app.report_error, label, exc)
        return run
    return wrap

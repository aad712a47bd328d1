"""Errors the faces turn into one line on stderr and an exit code. An error about one field of a
training configuration carries that field's name (`field`): no face parses an error's text."""

from __future__ import annotations


class BadInput(Exception):
    """The user gave something we cannot use (exit code 2). The message names file, field, value."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class BadConfig(BadInput):
    """Every bad field of a training configuration at once: {field: message}, in field order."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(problems.values()), field=next(iter(problems)))
        self.problems = problems


class NotFound(BadInput):
    """No run (or other record) with the id given."""


class NeedsRestart(BadInput):
    """Resuming would start a run that had trained over from step 0 (it has no checkpoint): the user
    must say so (`--restart`, or yes in the TUI)."""

    def __init__(self, message: str, run_id: int):
        super().__init__(message)
        self.run_id = run_id


class WorkFailed(Exception):
    """Something went wrong while doing the work itself (exit code 1)."""

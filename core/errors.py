"""Errors the faces turn into one line on stderr and an exit code."""


class BadInput(Exception):
    """The user gave something we cannot use (exit code 2). The message names file, field, value."""


class WorkFailed(Exception):
    """Something went wrong while doing the work itself (exit code 1)."""

"""Where the store and the runs live when nothing says otherwise: one default for every face and
every process (a flag wins, then the environment, then the default)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

STORE_ENV = "DDPM_TUI_DB"
RUNS_ENV = "DDPM_TUI_RUNS"
DEFAULT_URL = "sqlite:///runs.db"
DEFAULT_RUNS_DIR = "runs"


def store_url(given: str | None = None) -> str:
    return given or os.environ.get(STORE_ENV) or DEFAULT_URL


def runs_dir(given: str | Path | None = None) -> Path:
    return Path(given or os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)


def inherited_store_url(usage: str) -> str | None:
    """The store a detached process (trainer, worker, evaluation or synthetic-set job) was started
    for, from DDPM_TUI_DB; such a process never falls back to ./runs.db. None, after printing the
    usage line `DDPM_TUI_DB=URL <usage>` to stderr, when it is not set."""
    url = os.environ.get(STORE_ENV)
    if not url:
        print(f"usage: {STORE_ENV}=URL {usage}", file=sys.stderr)
    return url or None

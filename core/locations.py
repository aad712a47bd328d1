"""Where the store and the runs live when nothing says otherwise: one default for every face and
every process (a flag wins, then the environment, then the default)."""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "DDPM_TUI_DB"
RUNS_ENV = "DDPM_TUI_RUNS"
DEFAULT_URL = "sqlite:///runs.db"
DEFAULT_RUNS_DIR = "runs"


def store_url(given: str | None = None) -> str:
    return given or os.environ.get(STORE_ENV) or DEFAULT_URL


def runs_dir(given: str | Path | None = None) -> Path:
    return Path(given or os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)

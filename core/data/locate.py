"""Where datasets are: a `--data` value to a folder, and the cache the demo set and image checks use."""

from __future__ import annotations

import os
from pathlib import Path

from core.data.demo import demo_dataset_path
from core.data.sources import detect_layout


def cache_dir() -> Path:
    """DDPM_TUI_CACHE, or ~/.cache/ddpm-tui."""
    return Path(os.environ.get("DDPM_TUI_CACHE", Path.home() / ".cache" / "ddpm-tui"))


def resolve_data(data: str) -> Path:
    """The dataset folder a --data value names ('demo' builds the demo set on first use)."""
    if data == "demo":
        return demo_dataset_path(cache_dir())
    root = Path(data).expanduser()
    detect_layout(root)
    return root

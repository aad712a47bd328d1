"""Atomic, self-checking checkpoints: temp file, fsync, rename; newest good one wins on load."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from core.errors import BadInput

CKPT_PATTERN = re.compile(r"^ckpt-(\d{8})\.pt$")


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"ckpt-{step:08d}.pt"


def save_atomic(state: dict, path: Path) -> None:
    """Write `state` so that `path` is either the old file or the complete new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if CKPT_PATTERN.match(p.name))


def prune(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints; also clear temp files a killed writer left behind."""
    for stale in Path(ckpt_dir).glob(".ckpt-*.tmp-*"):
        stale.unlink(missing_ok=True)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)


def load(path: Path) -> dict:
    """Load one checkpoint with weights_only=True; BadInput if it is not a readable checkpoint."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise BadInput(f"{path}: corrupt or unreadable checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise BadInput(f"{path}: not a ddpm-tui checkpoint")
    return state


def load_latest_good(ckpt_dir: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads; corrupt newer ones are skipped. None when there is none."""
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            return path, load(path)
        except BadInput:
            continue
    return None

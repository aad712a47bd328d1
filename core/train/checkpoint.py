"""Atomic, self-checking checkpoints: temp file, fsync, rename; newest good one wins on load."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path

import torch

from core.errors import BadInput, WorkFailed

log = logging.getLogger("ddpm_tui.train")

CKPT_PATTERN = re.compile(r"^ckpt-(\d{8})\.pt$")
ARCHITECTURE_KEYS = ("image_size", "dim", "dim_mults", "res_blocks", "attention", "attn_resolutions",
                     "conditional")
# 2: a SiLU before each residual block's embedding projection (checkpoints without the key are 1)
ARCHITECTURE_VERSION = 2


DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "demo_weights.pt"


def initial_weights_path(value: str) -> Path:
    """The file an --init-weights value names ('demo': the weights shipped for the demo preset)."""
    return DEMO_WEIGHTS if value == "demo" else Path(value).expanduser()


def read_initial_weights(cfg) -> dict:
    """The network weights a new run starts from (--init-weights): the 'ema' entry of a weights file
    or of a run's checkpoint; BadInput naming the file when it is missing, unreadable or made for
    another architecture."""
    from core.model import build_unet

    path = initial_weights_path(cfg.init_weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadInput(f"--init-weights {path}: no such file", field="init_weights") from None
    except Exception as exc:  # a truncated or foreign file
        raise BadInput(f"--init-weights {path}: not readable weights ({exc.__class__.__name__})",
                       field="init_weights") from None
    weights = state.get("ema") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise BadInput(f"--init-weights {path}: holds no 'ema' weights", field="init_weights")
    try:
        build_unet(cfg).load_state_dict(weights)
    except RuntimeError as exc:
        raise BadInput(f"--init-weights {path}: made for another network ({str(exc).splitlines()[0]}); train with "
                       "the architecture they were made with", field="init_weights") from None
    return weights


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"ckpt-{step:08d}.pt"


def checkpoint_step(path: Path) -> int:
    return int(CKPT_PATTERN.match(Path(path).name).group(1))


def is_disk_full(exc: BaseException) -> bool:
    """Whether ENOSPC/EDQUOT is behind `exc`: torch reports a short write as 'unexpected pos' with
    the OSError only in the exception's context."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_message(folder: Path, what: str) -> str:
    free = shutil.disk_usage(folder).free
    return f"disk full: could not write {what} in {folder} ({free / 2**20:.1f} MiB free)"


def ensure_room(folder: Path, needed: int) -> None:
    """WorkFailed naming the full disk when `folder` has less than `needed` bytes (plus 5%) free."""
    if shutil.disk_usage(folder).free < needed * 1.05:
        raise WorkFailed(disk_full_message(folder, "a checkpoint") + f"; one needs about {needed / 2**20:.1f} MiB")


def save_atomic(state: dict, path: Path) -> None:
    """Write `state` so that `path` is either the old file or the complete new one, never a torn one.
    A failed write leaves no temp file behind; a full disk is reported as such (WorkFailed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise WorkFailed(disk_full_message(path.parent, path.name) + "; the previous checkpoints are kept") from None
        raise
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


def prune(ckpt_dir: Path, keep: int, current_step: int) -> None:
    """After writing the checkpoint of `current_step`, keep it and the newest `keep` - 1 before it;
    also clear temp files a killed writer left behind. Files named after later steps are not this
    run's timeline (a garbage or foreign file): they are never counted as the newest, so the
    checkpoint just written is never the one deleted."""
    for stale in Path(ckpt_dir).glob(".ckpt-*.tmp-*"):
        stale.unlink(missing_ok=True)
    timeline = [p for p in list_checkpoints(ckpt_dir) if checkpoint_step(p) <= current_step]
    for old in timeline[:-keep]:
        old.unlink(missing_ok=True)


def set_aside(path: Path, why: str) -> Path:
    """Rename a checkpoint out of the run's timeline (kept for inspection, never loaded again)."""
    target = Path(path).with_name(f"{Path(path).name}.{why}")
    os.replace(path, target)
    log.warning("checkpoint %s set aside as %s", Path(path).name, target.name)
    return target


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
        except BadInput as exc:
            log.info("skipping %s", exc)
            continue
    return None


def architecture_mismatch(state: dict, cfg) -> str | None:
    """How the network saved in `state` differs from the one `cfg` builds, or None."""
    saved = state.get("config", {})
    diffs = [f"{k}={saved.get(k)!r} (run has {getattr(cfg, k)!r})" for k in ARCHITECTURE_KEYS
             if k in saved and saved.get(k) != getattr(cfg, k)]
    version = state.get("architecture_version", 1)
    if version != ARCHITECTURE_VERSION:
        diffs.insert(0, f"model version {version} (this ddpm-tui builds version {ARCHITECTURE_VERSION})")
    return ", ".join(diffs) or None


def check_architecture(path: Path, state: dict, cfg) -> None:
    why = architecture_mismatch(state, cfg)
    if why:
        raise BadInput(f"{path}: checkpoint of another architecture: {why}")


def choose_checkpoint(ckpt_dir: Path, cfg, step: int | None = None) -> tuple[Path, dict] | None:
    """The checkpoint to continue or sample from: that of `step` when given, else the newest one that
    loads (corrupt ones are skipped). A newer loadable checkpoint of another architecture is never
    passed over silently: BadInput names it and the newest one that fits. None when there is none."""
    paths = list_checkpoints(ckpt_dir)
    if step is not None:
        path = checkpoint_path(ckpt_dir, step)
        if path not in paths:
            have = ", ".join(str(checkpoint_step(p)) for p in paths) or "none"
            raise BadInput(f"--checkpoint {step}: no {path.name} in {ckpt_dir} (steps with checkpoints: {have})")
        state = load(path)
        check_architecture(path, state, cfg)
        return path, state
    mismatched = None
    for path in reversed(paths):
        try:
            state = load(path)
        except BadInput as exc:
            log.info("skipping %s", exc)
            continue
        why = architecture_mismatch(state, cfg)
        if why is None and mismatched is None:
            return path, state
        if why is None:
            raise BadInput(f"{mismatched[0]}: checkpoint of another architecture: {mismatched[1]}; the newest "
                           f"checkpoint that fits is {path.name}: use it with --checkpoint {checkpoint_step(path)}")
        mismatched = mismatched or (path, why)
    if mismatched:
        raise BadInput(f"{mismatched[0]}: checkpoint of another architecture: {mismatched[1]}; no "
                       f"checkpoint in {ckpt_dir} fits this run")
    if paths:
        raise BadInput(f"{ckpt_dir}: no loadable checkpoint (all {len(paths)} are corrupt)")
    return None


def set_aside_after(ckpt_dir: Path, step: int, why: str) -> None:
    """Take every checkpoint newer than `step` out of the timeline (a resume from `step` replays them)."""
    for path in list_checkpoints(ckpt_dir):
        if checkpoint_step(path) > step:
            set_aside(path, why)

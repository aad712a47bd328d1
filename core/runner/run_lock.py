"""One trainer per run directory: an exclusive flock on `<run_dir>/trainer.lock`, held for the life
of the trainer process. The kernel drops the lock when the process dies however it dies, so a held
lock means a live trainer on this host, paused or not."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from core.errors import BadInput
from core.run_dir import RunDir


def _lock_path(run_dir: str | Path) -> Path:
    return RunDir(run_dir).trainer_lock


def _holder_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def trainer_holding(run_dir: str | Path | None) -> int | None:
    """The pid of the live trainer holding `run_dir` (0 when the holder is unknown), or None when
    no trainer holds it. Probes with a non-blocking lock that is released at once."""
    if not run_dir:
        return None
    path = _lock_path(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_pid(path) or 0
    finally:
        os.close(fd)  # closing the descriptor releases a probe's lock
    return None


class RunDirLock:
    """`with RunDirLock(run_dir):` trains; a second trainer on the same directory gets BadInput.

    Probes by `trainer_holding` hold the lock for microseconds, so acquiring retries briefly."""

    def __init__(self, run_dir: str | Path, run_id: int):
        self.path, self.run_id = _lock_path(run_dir), run_id
        self.fd: int | None = None

    def __enter__(self) -> "RunDirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        for attempt in range(40):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 39:
                    os.close(fd)
                    holder = _holder_pid(self.path)
                    raise BadInput(f"run {self.run_id} already has a live trainer"
                                   f"{f' (pid {holder})' if holder else ''} on {self.path.parent}") from None
                time.sleep(0.025)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

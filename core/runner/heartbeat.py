"""The trainer's heartbeat: proof of life for runs watched from another host (core.runner.liveness)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from core.store import queries
from core.store.db import Store

HEARTBEAT_SECONDS = 5.0
log = logging.getLogger("ddpm_tui.train")


class Heartbeat:
    """Writes the database's time and the current step to the run row every few seconds, from a
    thread, so a long step or checkpoint write never makes a live run look dead."""

    def __init__(self, store: Store, run_id: int, step: Callable[[], int], every: float = HEARTBEAT_SECONDS):
        self.store, self.run_id, self.step, self.every = store, run_id, step, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def beat(self) -> None:
        try:
            queries.update_run(self.store, self.run_id, heartbeat_at=queries.database_clock(self.store),
                               step=self.step())
        except Exception as exc:  # a missed beat must never kill training
            log.warning("heartbeat failed: %s", str(exc).splitlines()[0])

    def __enter__(self):
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.beat()

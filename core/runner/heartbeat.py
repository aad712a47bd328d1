"""The trainer's heartbeat: proof of life for runs watched from another host (core.runner.liveness)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from core.store import queries
from core.store.db import Store

HEARTBEAT_SECONDS = 5.0
log = logging.getLogger("ddpm_tui.train")


STOP_REQUESTED = "stop requested"  # the exit reason `stop` stamps for a trainer on another host
KILL_REQUESTED = "kill requested"  # the exit reason `kill` stamps: the run then ends killed
CONTROL_REQUESTS = (STOP_REQUESTED, KILL_REQUESTED)


class Heartbeat:
    """Writes the database's time and the current step to the run row every few seconds, from a
    thread, so a long step or checkpoint write never makes a live run look dead. Each beat also
    brings a `lost` run back to `running` and hands a stop or kill requested through the store
    (from another host, which may not signal this process) to `on_request`."""

    def __init__(self, store: Store, run_id: int, step: Callable[[], int], every: float = HEARTBEAT_SECONDS,
                 on_request: Callable[[str], None] | None = None):
        self.store, self.run_id, self.step, self.every = store, run_id, step, every
        self.on_request = on_request
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def beat(self) -> None:
        try:
            queries.update_run(self.store, self.run_id, heartbeat_at=queries.database_clock(self.store),
                               step=self.step())
            queries.set_status(self.store, self.run_id, "running", reason="its heartbeat is back", expect=("lost",))
            if self.on_request is not None:
                run = queries.get_run(self.store, self.run_id)
                if run.exit_reason in CONTROL_REQUESTS:
                    self.on_request(run.exit_reason)
                elif run.status == "killed":  # killed while it was lost and silent
                    self.on_request(KILL_REQUESTED)
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

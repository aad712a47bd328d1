"""The queue worker: claims queued runs one at a time per slot and runs them as detached processes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

from core.runner.lifecycle import start_process
from core.runner.liveness import reconcile, running_fields
from core.runner.processes import thread_env
from core.store import queries
from core.store.db import Store

log = logging.getLogger("ddpm_tui.worker")


def claim_next(store: Store, worker_label: str) -> int | None:
    """Atomically move the oldest queued run to `running`, owned by this worker until its trainer
    starts; two workers never get the same run."""
    for run in queries.list_runs(store, status="queued"):
        if queries.set_status(store, run.id, "running", reason=f"claimed by worker {worker_label}",
                              expect=("queued",), **running_fields()):
            return run.id
    return None


class Worker:
    """`slots` runs at once; slot i sees GPU gpus[i % len(gpus)] through CUDA_VISIBLE_DEVICES."""

    def __init__(self, store: Store, slots: int = 1, gpus: list[str] | None = None, poll: float = 1.0,
                 until_empty: bool = False):
        self.store, self.slots, self.gpus = store, slots, gpus or []
        self.poll, self.until_empty = poll, until_empty
        self.active: dict[int, tuple[int, object]] = {}  # slot -> (run id, Popen)
        self.stopping = False
        self.label = f"{socket.gethostname()}:{os.getpid()}"

    def slot_env(self, slot: int) -> dict:
        if self.gpus:
            return {"CUDA_VISIBLE_DEVICES": self.gpus[slot % len(self.gpus)]}
        return thread_env(max(1, (os.cpu_count() or 1) // self.slots))

    def reap(self) -> None:
        for slot, (run_id, proc) in list(self.active.items()):
            if proc.poll() is not None:
                log.info("run %d ended (exit %s)", run_id, proc.returncode)
                del self.active[slot]

    def fill(self) -> None:
        for slot in range(self.slots):
            if self.stopping or slot in self.active:
                continue
            run_id = claim_next(self.store, self.label)
            if run_id is None:
                return
            try:
                proc = start_process(self.store, run_id, self.slot_env(slot))
            except Exception as exc:  # the claimed run must not stay `running` under a live worker
                queries.set_status(self.store, run_id, "failed", reason=f"could not start: {exc}", expect=("running",))
                log.error("run %d: could not start: %s", run_id, exc)
                continue
            self.active[slot] = (run_id, proc)
            log.info("slot %d: started run %d (pid %d)", slot, run_id, proc.pid)

    def run(self) -> None:
        """Serve the queue until SIGTERM/SIGINT (or, with until_empty, until nothing is left)."""
        def stop(signum, _frame):
            log.info("worker received %s: no new runs will be started", signal.Signals(signum).name)
            self.stopping = True

        previous = signal.signal(signal.SIGTERM, stop), signal.signal(signal.SIGINT, stop)
        try:
            while not self.stopping:
                reconcile(self.store)
                self.reap()
                self.fill()
                if self.until_empty and not self.active and not queries.list_runs(self.store, status="queued"):
                    break
                time.sleep(self.poll)
        finally:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])

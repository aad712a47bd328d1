"""The queue worker: claims queued runs one at a time per slot and runs them as detached processes."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import time

from core.errors import BadInput
from core.runner.lifecycle import start_process
from core.runner.liveness import reconcile
from core.runner.ownership import running_fields
from core.runner.processes import thread_env
from core.store import queries
from core.store.db import Store

log = logging.getLogger("ddpm_tui.worker")


def queue_sweep_evaluations(store: Store) -> int:
    """Queue, once, the --eval-on-finish evaluation of every finished run of a sweep that asks for
    one. Returns how many were queued."""
    queued = 0
    for sweep in queries.list_sweeps(store):
        spec = (sweep.spec or {}).get("eval_on_finish")
        if not spec:
            continue
        finished = queries.list_runs(store, status="finished", sweep_id=sweep.id)
        have = {j.run_id for j in queries.eval_jobs(store, [r.id for r in finished])} if finished else set()
        for run in finished:
            if run.id not in have and queries.queue_eval_job(store, run.id, spec["metrics"], spec["n"],
                                                             spec["nll_timesteps"]):
                queued += 1
    return queued


def claim_next(store: Store, worker_label: str) -> int | None:
    """Atomically move the oldest queued run to `running`, owned by this worker until its trainer
    starts; two workers never get the same run."""
    for run in queries.list_runs(store, status="queued"):
        if queries.set_status(store, run.id, "running", reason=f"claimed by worker {worker_label}",
                              expect=("queued",), **running_fields()):
            return run.id
    return None


MAX_SLOTS = 1024  # more runs at once than any one machine holds: a typo
MAX_POLL_S = 3600.0


def check_slots(slots: int) -> int:
    """`--slots`: runs at once, 1..MAX_SLOTS."""
    if not 1 <= slots <= MAX_SLOTS:
        raise BadInput(f"--slots: must be between 1 and {MAX_SLOTS}, got {slots}")
    return slots


def check_poll(seconds: float) -> float:
    """`--poll`: seconds between queue checks, finite, above 0 and at most MAX_POLL_S."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_POLL_S):
        raise BadInput(f"--poll: must be a number of seconds above 0 and at most {MAX_POLL_S:g}, got {seconds}")
    return seconds


def parse_gpu_groups(text: str | None) -> list[str]:
    """`--gpus` as each slot's devices: "0,1,2,3" gives slots one GPU each, "0,1;2,3" two each (for
    runs trained by two processes, --nproc 2). None means no GPUs given; every id is a GPU index
    (ASCII digits), used once, in a group that is not empty; anything else is BadInput, since
    CUDA_VISIBLE_DEVICES silently hides every GPU after an id it cannot read."""
    if text is None:
        return []
    separator = ";" if ";" in text else ","
    groups = [[gpu.strip() for gpu in group.split(",")] for group in text.split(separator)]
    ids = [gpu for group in groups for gpu in group]
    bad = next((gpu for gpu in ids if not (gpu.isascii() and gpu.isdigit())), None)
    if bad is not None:
        raise BadInput(f"--gpus: {bad!r} in {text!r} is not a GPU index (0, 1, ...); give ids like 0,1 or groups "
                       "like 0,1;2,3")
    indices = [int(gpu) for gpu in ids]
    twice = next((gpu for gpu in indices if indices.count(gpu) > 1), None)
    if twice is not None:
        raise BadInput(f"--gpus: GPU {twice} is given twice in {text!r}; each GPU goes to one slot")
    return [",".join(str(int(gpu)) for gpu in group) for group in groups]


class Worker:
    """`slots` runs at once; slot i sees the GPUs gpus[i % len(gpus)] through CUDA_VISIBLE_DEVICES."""

    def __init__(self, store: Store, slots: int = 1, gpus: list[str] | None = None, poll: float = 1.0,
                 until_empty: bool = False):
        self.store, self.slots, self.gpus = store, slots, gpus or []
        self.poll, self.until_empty = poll, until_empty
        self.active: dict[int, tuple[str, int, object]] = {}  # slot -> ("run" | "eval", id, Popen)
        self.stopping = False
        self.label = f"{socket.gethostname()}:{os.getpid()}"

    def slot_env(self, slot: int) -> dict:
        if self.gpus:
            return {"CUDA_VISIBLE_DEVICES": self.gpus[slot % len(self.gpus)]}
        return thread_env(max(1, (os.cpu_count() or 1) // self.slots))

    def reap(self) -> None:
        for slot, (kind, item, proc) in list(self.active.items()):
            if proc.poll() is not None:
                log.info("%s %d ended (exit %s)", kind, item, proc.returncode)
                if kind == "eval" and proc.returncode:  # a job that died without saying why
                    queries.set_eval_job(self.store, item, expect=("running",), status="failed",
                                         reason=f"evaluation process exited with {proc.returncode}")
                del self.active[slot]

    def fill(self) -> None:
        """Give every free slot a queued run, or else a queued evaluation."""
        for slot in range(self.slots):
            if self.stopping or slot in self.active:
                continue
            started = self.start_run(slot) or self.start_evaluation(slot)
            if not started:
                return

    def start_run(self, slot: int) -> bool:
        run_id = claim_next(self.store, self.label)
        if run_id is None:
            return False
        try:
            proc = start_process(self.store, run_id, self.slot_env(slot))
        except Exception as exc:  # the claimed run must not stay `running` under a live worker
            queries.set_status(self.store, run_id, "failed", reason=f"could not start: {exc}", expect=("running",))
            log.error("run %d: could not start: %s", run_id, exc)
            return True
        self.active[slot] = ("run", run_id, proc)
        log.info("slot %d: started run %d (pid %d)", slot, run_id, proc.pid)
        return True

    def start_evaluation(self, slot: int) -> bool:
        from core.evaluate.job import start_job_process

        job = queries.claim_eval_job(self.store, socket.gethostname(), os.getpid())
        if job is None:
            return False
        try:
            proc = start_job_process(self.store, job, self.slot_env(slot))
        except Exception as exc:
            queries.set_eval_job(self.store, job.id, expect=("running",), status="failed", reason=f"could not start: {exc}")
            log.error("evaluation %d of run %d: could not start: %s", job.id, job.run_id, exc)
            return True
        self.active[slot] = ("eval", job.id, proc)
        log.info("slot %d: evaluating run %d (%s, pid %d)", slot, job.run_id, job.metrics, proc.pid)
        return True

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
                queue_sweep_evaluations(self.store)
                self.fill()
                if self.until_empty and not self.active and not queries.list_runs(self.store, status="queued") \
                        and not queries.eval_jobs(self.store, status="queued"):
                    break
                time.sleep(self.poll)
        finally:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])


def main(argv: list[str] | None = None) -> int:
    """`DDPM_TUI_DB=URL python -m core.runner.worker [--slots N] [--gpus 0,1] [--until-empty]`: the
    detached worker the TUI starts, with no need of the command-line face."""
    import argparse
    import sys

    from core.locations import inherited_store_url

    parser = argparse.ArgumentParser(prog="python -m core.runner.worker")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--gpus", default=None)
    parser.add_argument("--until-empty", action="store_true")
    parser.add_argument("--poll", type=float, default=1.0)
    args = parser.parse_args(argv)
    url = inherited_store_url("python -m core.runner.worker [--slots N>=1] [--gpus IDS] [--until-empty]")
    if url is None:
        return 2
    try:
        slots, gpus, poll = check_slots(args.slots), parse_gpu_groups(args.gpus), check_poll(args.poll)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("ddpm_tui").setLevel(logging.INFO)
    logging.getLogger("ddpm_tui").addHandler(logging.StreamHandler(sys.stderr))
    Worker(Store(url), slots, gpus, poll=poll, until_empty=args.until_empty).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

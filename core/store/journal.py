"""Metric logging that survives a database outage: every point goes to the run's metrics.jsonl
journal first, then to the store in batches. Replaying the journal is idempotent."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from core.store import queries
from core.store.db import Store

log = logging.getLogger("ddpm_tui.journal")  # under "ddpm_tui": a run's train.log receives it


class MetricLogger:
    """`log(step, loss=..., lr=...)` appends to the journal at once; a background thread writes the
    points to the store every `batch_points` points or `batch_seconds` seconds, so a slow or locked
    database never stalls training. Points the store refuses stay pending and are retried."""

    def __init__(self, store: Store | None, run_id: int, journal: Path, batch_points: int = 500,
                 batch_seconds: float = 2.0):
        self.store, self.run_id, self.journal = store, run_id, Path(journal)
        self.batch_points, self.batch_seconds = batch_points, batch_seconds
        # line-buffered: a point is in the OS's hands as soon as it is logged, so SIGKILL loses none
        self._fh = self.journal.open("a", buffering=1)
        self._pending: list[tuple[str, int, float, float]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.store_ok = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def log(self, step: int, **values: float) -> None:
        wall = time.time()
        self._fh.write(json.dumps({"s": step, "t": wall, "m": values}) + "\n")
        with self._lock:
            self._pending.extend((k, step, float(v), wall) for k, v in values.items())
            if len(self._pending) >= self.batch_points:
                self._wake.set()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.batch_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> bool:
        """Write pending points to the store now; False if the store failed (they stay pending)."""
        with self._lock:
            batch = list(self._pending)
        if not batch or self.store is None:
            return True
        try:
            queries.insert_metrics(self.store, self.run_id, batch)
        except SQLAlchemyError as exc:
            if self.store_ok:
                log.warning("metric store unavailable, journaling only: %s", str(exc).splitlines()[0])
            self.store_ok = False
            return False
        with self._lock:
            del self._pending[:len(batch)]
        self.store_ok = True
        return True

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()
        self._fh.close()


def parse_entry(line: str) -> tuple[int, float, dict[str, float]] | None:
    """(step, wall time, {key: value}) of one journal line, or None when the line is damaged: torn
    by a kill mid-write, edited by hand, or missing a field."""
    try:
        entry = json.loads(line)
        step, wall, values = entry["s"], float(entry["t"]), entry["m"]
        if not isinstance(step, int) or isinstance(step, bool) or not isinstance(values, dict):
            return None
        return step, wall, {str(k): float(v) for k, v in values.items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def read_journal(path: Path) -> list[tuple[str, int, float, float]]:
    """All points of a journal. Damaged lines are skipped, and said so (with the first one's line
    number) in the log, which a run's log file receives."""
    points, damaged = [], []
    if not Path(path).exists():
        return points
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        entry = parse_entry(line)
        if entry is None:
            damaged.append(number)
            continue
        step, wall, values = entry
        points += [(k, step, v, wall) for k, v in values.items()]
    if damaged:
        log.warning("%s: skipped %d damaged line(s) (the first is line %d); they are dropped when the run "
                    "resumes", path, len(damaged), damaged[0])
    return points


def replay_journal(store: Store, run_id: int, path: Path, chunk: int = 5000) -> int:
    """Insert every journal point the store lacks; returns how many were missing."""
    points = read_journal(path)
    return sum(queries.insert_metrics(store, run_id, points[i:i + chunk]) for i in range(0, len(points), chunk))


def truncate_journal(path: Path, last_step: int) -> None:
    """Drop journal entries after `last_step` (used when a run resumes from that step's checkpoint),
    and damaged lines (see parse_entry)."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        entry = parse_entry(line)
        if entry is not None and entry[0] <= last_step:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

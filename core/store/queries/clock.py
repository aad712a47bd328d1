"""The store's clocks: this host's, for the times it records, and the database server's, for
judging heartbeats across hosts."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from core.store.db import Store


def now() -> float:
    return time.time()


def database_clock(store: Store):
    """An SQL expression of the database server's time in seconds since the epoch: heartbeats and
    the staleness of other hosts' runs are judged on this one clock, whatever each host's clock says
    (optuna's RDB storage does the same)."""
    if store.engine.dialect.name == "postgresql":
        return func.extract("epoch", func.clock_timestamp())
    return (func.julianday("now") - 2440587.5) * 86400.0  # SQLite: days since noon 4713 BC -> Unix seconds


def database_time(store: Store) -> float:
    with store.session() as s:
        return float(s.scalar(select(database_clock(store))))

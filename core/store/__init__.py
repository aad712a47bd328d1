"""The run store: SQLAlchemy tables, Alembic migrations, and the queries the engine calls, which
hand out frozen entities (core.store.entities), never ORM rows."""

from core.store.db import DEFAULT_URL, Store
from core.store.models import LIVE_STATUSES, RUN_STATUSES

__all__ = ["DEFAULT_URL", "LIVE_STATUSES", "RUN_STATUSES", "Store"]

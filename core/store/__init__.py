"""The run store: SQLAlchemy tables, Alembic migrations, and the queries the faces use."""

from core.store.db import DEFAULT_URL, Store
from core.store.models import RUN_STATUSES

__all__ = ["DEFAULT_URL", "RUN_STATUSES", "Store"]

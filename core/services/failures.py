"""How a face reports a failure of the store: one line without the URL's secrets, and its exit code."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from core.errors import BadInput
from core.store.db import hide_secrets, is_locked, store_failure


def without_secrets(message: str, db_url: str) -> str:
    """`message` (an error to show) with the store URL's password and secret parameters hidden."""
    return hide_secrets(message, db_url)


def database_failure(exc: BaseException, db_url: str) -> tuple[str, int] | None:
    """(one line, exit code: 2 for a bad URL or file, 1 for a failure) of a database error of the
    store at `db_url`; None when `exc` is no database error."""
    if not isinstance(exc, SQLAlchemyError):
        return None
    if is_locked(exc):
        return ("database is busy: another process kept it locked through every retry; nothing was changed, "
                "try again", 1)
    if failure := store_failure(exc, db_url):
        return str(failure), 2 if isinstance(failure, BadInput) else 1
    return f"database: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}", 1

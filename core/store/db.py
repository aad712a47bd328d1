"""Opening the store: engine, SQLite pragmas, Alembic migrations, retry on a locked database."""

from __future__ import annotations

import functools
import random
import re
import sqlite3
import time
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import BadInput

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_URL = "sqlite:///runs.db"


def alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


_REVISION = re.compile(r"^(down_)?revision\s*=\s*['\"]?([\w-]+|None)['\"]?", re.M)


def migration_revisions() -> tuple[set[str], str]:
    """(all known revisions, head) read from the migration files themselves. Importing Alembic
    costs a noticeable part of a second, so it is only imported when there is something to do."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for down, value in _REVISION.findall(path.read_text()):
            (parents if down else revisions).add(value)
    heads = revisions - parents
    assert len(heads) == 1, f"migrations must have one head, found {heads}"
    return revisions, heads.pop()


def head_revision() -> str:
    return migration_revisions()[1]


def current_revision(conn) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("select version_num from alembic_version")).scalar()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = make_url(url).database or ""
        if path and path != ":memory:" and not path.startswith("file:"):
            # The file's header is left to SQLite: opening and closing it ourselves would drop the
            # POSIX locks this process's other connections hold on it.
            db_file = Path(path)
            if not db_file.parent.exists():
                raise BadInput(f"{db_file.parent}: directory for the database does not exist")
        engine = create_engine(url, connect_args={"timeout": 5, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """An opened, migrated database. `session()` gives a SQLAlchemy session."""

    def __init__(self, url: str = DEFAULT_URL, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to head; refuse a database made by a newer version of the code."""
        known, head = migration_revisions()
        try:
            with self.engine.connect() as conn:
                current = current_revision(conn)
                if current == head:
                    return
                if current is not None and current not in known:
                    raise BadInput(
                        f"{self.url}: database schema {current} is newer than this ddpm-tui "
                        f"(knows up to {head}); upgrade ddpm-tui, the database was not modified"
                    )
            from alembic import command

            with self.engine.begin() as conn:
                command.upgrade(alembic_config(conn), "head")
        except (OperationalError, DBAPIError) as exc:
            if "not a database" in _short(exc):
                raise BadInput(f"{self.url}: not an SQLite database (left untouched)") from None
            raise BadInput(f"{self.url}: cannot open the database ({_short(exc)})") from None

    def session(self) -> Session:
        return self._sessions()

    def close(self) -> None:
        self.engine.dispose()


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]


def is_locked(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text or isinstance(
        getattr(exc, "orig", None), sqlite3.OperationalError) and "locked" in text


def retrying(fn=None, *, attempts: int = 4, base_delay: float = 0.05):
    """Retry `fn` with jittered exponential backoff while SQLite says the database is locked."""
    if fn is None:
        return functools.partial(retrying, attempts=attempts, base_delay=base_delay)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for attempt in range(attempts):
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                if not is_locked(exc) or attempt == attempts - 1:
                    raise
                time.sleep(base_delay * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    return wrapper

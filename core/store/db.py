"""Opening the store: engine, SQLite pragmas, Alembic migrations, retry on a locked database."""

from __future__ import annotations

import functools
import math
import os
import random
import re
import shutil
import sqlite3
import time
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker

from core.errors import BadInput, WorkFailed
from core.locations import DEFAULT_URL

MIGRATIONS = Path(__file__).parent / "migrations"


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


def busy_timeout_s() -> float:
    """How long one statement waits for another writer's lock (DDPM_TUI_BUSY_TIMEOUT, default 5 s)."""
    given = os.environ.get("DDPM_TUI_BUSY_TIMEOUT", "5")
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise BadInput(f"DDPM_TUI_BUSY_TIMEOUT: not a finite number of seconds: {given!r}")
    return max(0.0, seconds)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s() * 1000)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# query parameters that carry secrets to the driver (libpq's password and sslpassword, ...)
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token", re.I)


def redact(url: str) -> str:
    """The URL with every password replaced by ***, fit for messages and logs: the one after the
    user name, one written with unencoded '@'s, and secret query parameters (?password=...)."""
    try:
        parsed = make_url(url)
    except Exception:  # not parseable: hide all that is before the last '@', and secret parameters
        hidden = re.sub(r"://.*@", "://***@", url, flags=re.S)
        return re.sub(rf"([?&][^=&]*(?:{_SECRET_PARAMETER.pattern})[^=&]*=)[^&]*", r"\1***", hidden, flags=re.I)
    secret_keys = {key for key in parsed.query if _SECRET_PARAMETER.search(key)}
    if parsed.password is None and not secret_keys:
        return url  # shown as typed
    if parsed.host and "@" in parsed.host:  # SQLAlchemy ends a password at its first '@'; the rest reads as host
        parsed = parsed.set(password="***", host=parsed.host.rsplit("@", 1)[1])
    query = {key: "***" if key in secret_keys else value for key, value in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def url_secrets(url: str) -> list[str]:
    """The texts of `url` never to be shown, longest first: its password (also the parts after an
    unencoded '@', which SQLAlchemy reads as the host) and the values of secret query parameters."""
    try:
        parsed = make_url(url)
    except Exception:
        return []
    secrets = [parsed.password or ""]
    if parsed.host and "@" in parsed.host:
        spilled = parsed.host.rsplit("@", 1)[0]
        secrets += [spilled, f"{parsed.password}@{spilled}"]
    for key, value in parsed.query.items():
        if _SECRET_PARAMETER.search(key):
            secrets += [value] if isinstance(value, str) else list(value)
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def hide_secrets(message: str, url: str) -> str:
    """`message` (a driver's error, say) with every secret of `url` in it replaced by ***."""
    for secret in url_secrets(url):
        message = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "***", message)
    return message


# the Python packages behind SQLAlchemy's drivers, for the message when one is missing
DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'", "pg8000": "pg8000",
                   "asyncpg": "asyncpg", "pymysql": "pymysql", "MySQLdb": "mysqlclient", "mysqldb": "mysqlclient",
                   "cx_Oracle": "cx_Oracle", "oracledb": "oracledb", "pyodbc": "pyodbc"}


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for in-memory, URI-style or other databases)."""
    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            db_file = sqlite_path(url)
            # The file's header is left to SQLite: opening and closing it ourselves would drop the
            # POSIX locks this process's other connections hold on it.
            if db_file is not None and not db_file.parent.exists():
                raise BadInput(f"{db_file.parent}: directory for the database does not exist")
            engine = create_engine(url, connect_args={"timeout": busy_timeout_s(), "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        package = DRIVER_PACKAGES.get(exc.name or "", exc.name)
        raise BadInput(f"--db {redact(url)}: its driver {exc.name!r} is not installed (pip install {package})") from None
    except NoSuchModuleError:
        raise BadInput(f"--db {redact(url)}: unknown kind of database (sqlite:///FILE or "
                       "postgresql+psycopg://USER@HOST/DB)") from None
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise BadInput(f"--db {redact(url)}: not a database URL ({str(exc).splitlines()[0]})") from None


def sqlite_contents(path: Path) -> tuple[set[str], str | None]:
    """(table names, Alembic revision or None) of an existing SQLite file, read without changing it
    (the engine's connections switch a file to WAL as they open it, so they must not be first)."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s())
    try:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
        revision = None
        if "alembic_version" in tables:
            row = conn.execute("select version_num from alembic_version").fetchone()
            revision = row[0] if row else None
        return tables, revision
    finally:
        conn.close()


OUR_TABLES = {"runs", "sweeps", "metrics"}
# the advisory lock that one migrating process holds until its transaction ends ("ddpm-tui" in ASCII)
MIGRATION_LOCK_KEY = 0x6464706D2D747569


def check_ours(display: str, tables: set[str], revision: str | None, known: set[str]) -> None:
    """Refuse, before anything is written, a database that holds tables but is not a ddpm-tui store."""
    user_tables = {t for t in tables if not t.startswith("sqlite_")}
    if not user_tables:
        return
    if "alembic_version" not in user_tables or not OUR_TABLES <= user_tables:
        shown = ", ".join(sorted(user_tables)[:6]) + (", ..." if len(user_tables) > 6 else "")
        raise BadInput(f"{display}: not a ddpm-tui database (it holds other tables: {shown}); left unchanged")
    if revision is not None and revision not in known:
        raise BadInput(f"{display}: database schema {revision} is newer than this ddpm-tui (knows up to "
                       f"{max(known)}); upgrade ddpm-tui, the database was not modified")


class Store:
    """An opened, migrated database. `session()` gives a SQLAlchemy session."""

    def __init__(self, url: str = DEFAULT_URL, migrate: bool = True):
        self.url = url
        self.display_url = redact(url)
        db_file = sqlite_path(url)
        if migrate and db_file is not None:
            self._check_sqlite_file(db_file)
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @classmethod
    def existing(cls, url: str) -> "Store":
        """The store at `url` for commands that only read or change existing runs: a missing SQLite
        file is not created (it reads as an empty store)."""
        db_file = sqlite_path(url)
        if db_file is not None and not db_file.exists():
            return cls("sqlite://")
        return cls(url)

    def _check_sqlite_file(self, db_file: Path) -> None:
        if not db_file.exists():
            if db_file.parent.exists():  # a new store is private to its owner (SQLite's -wal/-shm follow)
                os.close(os.open(db_file, os.O_CREAT | os.O_WRONLY, 0o600))
            return
        try:
            tables, revision = sqlite_contents(db_file)
        except sqlite3.DatabaseError as exc:
            if is_locked(exc):
                raise WorkFailed(f"{self.display_url}: database is busy (another process holds its lock)") from None
            if failure := store_failure(exc, self.url):
                raise failure from None
            if "not a database" in str(exc):
                raise BadInput(f"{self.display_url}: not an SQLite database (left untouched)") from None
            raise BadInput(f"{self.display_url}: cannot open the database ({exc})") from None
        check_ours(self.display_url, tables, revision, migration_revisions()[0])

    def migrate(self) -> None:
        """Bring the schema to head in one transaction (a kill half-way leaves the old schema, never
        half a new one); refuse a database that is not ours or made by a newer ddpm-tui."""
        known, head = migration_revisions()
        sqlite = self.engine.dialect.name == "sqlite"
        try:
            with self.engine.connect() as conn:
                if current_revision(conn) == head:
                    return
                if not sqlite:
                    check_ours(self.display_url, set(inspect(conn).get_table_names()), current_revision(conn), known)
            from alembic import command

            with self.engine.connect() as conn:
                if sqlite:  # pysqlite runs DDL outside transactions unless one is begun explicitly
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                elif conn.dialect.name == "postgresql":  # PostgreSQL's DDL takes no lock that keeps two creators apart
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                if current_revision(conn) != head:  # another process may have migrated meanwhile
                    command.upgrade(alembic_config(conn), "head")
                conn.commit()
        except (OperationalError, DBAPIError) as exc:
            if is_locked(exc):
                raise WorkFailed(f"{self.display_url}: database is busy (another process holds its lock)") from None
            if failure := store_failure(exc, self.url):
                raise failure from None
            if "not a database" in _short(exc):
                raise BadInput(f"{self.display_url}: not an SQLite database (left untouched)") from None
            raise BadInput(f"{self.display_url}: cannot open the database ({hide_secrets(_short(exc), self.url)})") from None

    def session(self) -> Session:
        return self._sessions()

    def close(self) -> None:
        self.engine.dispose()


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]


FULL_BELOW_BYTES = 1 << 20  # less free space than this beside an SQLite store that fails to write is a full disk


def store_failure(exc: BaseException, url: str) -> BadInput | WorkFailed | None:
    """What a database error means when it is the store's place and not the data: a full disk
    (a failure of the work, exit 1) or a read-only store (bad input, exit 2); None otherwise.
    SQLite reports a full disk as a plain "disk I/O error" when it cannot size its -shm file, and
    a read-only file or folder as "unable to open database file", so both look at the file too."""
    message, db_file = _short(exc).lower(), sqlite_path(url)
    shown = redact(url)
    if "disk is full" in message or "no space left" in message or ("disk i/o error" in message and _full(db_file)):
        return WorkFailed(f"{shown}: disk full, the database cannot grow; nothing was changed (free some space "
                          "and try again)")
    unwritable = _unwritable(db_file)
    if "readonly" in message or "read-only" in message or ("unable to open" in message and unwritable):
        where = f": {unwritable} is not writable" if unwritable else ""
        return BadInput(f"{shown}: the database is read-only{where}; nothing was changed")
    return None


def _full(db_file: Path | None) -> bool:
    """Whether the filesystem of an SQLite store has (almost) no room left."""
    try:
        return db_file is not None and shutil.disk_usage(db_file.parent).free < FULL_BELOW_BYTES
    except OSError:
        return False


def _unwritable(db_file: Path | None) -> str | None:
    """The store's file, or its folder (where SQLite writes the -wal and -shm files), when this
    process cannot write it."""
    if db_file is None:
        return None
    if db_file.exists() and not os.access(db_file, os.W_OK):
        return str(db_file)
    folder = db_file.parent
    return f"its folder {folder}" if folder.exists() and not os.access(folder, os.W_OK) else None


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

"""What every use case works on: one store and its runs directory, the store opened lazily."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.store import Store


@dataclass
class Session:
    """One store and its runs directory, opened on first use (a TUI paints before it connects).
    `create=False` never creates a database file: a missing SQLite file reads as an empty store
    (what commands that only read or act on existing runs want)."""

    db_url: str
    runs_dir: Path
    create: bool = True

    def __post_init__(self):
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db_url) if self.create else Store.existing(self.db_url)
        return self._store

    @property
    def existing_store(self) -> Store:
        """For checks before anything is stored: the open store, else one that never creates a
        database file."""
        return self._store if self._store is not None else Store.existing(self.db_url)

    def without_secrets(self, message: str) -> str:
        """`message` (an error to show) with the store URL's password and secret parameters hidden."""
        from core.services.failures import without_secrets

        return without_secrets(message, self.db_url)

"""Storage: the SQL schema (private), Alembic migrations and frozen records.

``open_storage(url)`` is the one way in. Records are immutable; the ORM never leaves this package.
SQLAlchemy is imported on first use, so importing records stays cheap.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from storage.records import (TERMINAL_STATES, CheckpointRecord, ReportRecord, StudyRecord,
                             TrialRecord, TrialState)

if TYPE_CHECKING:
    from storage._rdb import Storage

DEFAULT_URL = "sqlite:///search.db"

__all__ = [
    "open_storage", "resolve_url", "DEFAULT_URL", "Storage", "StorageError", "StudyNotFound",
    "StudyExists", "SchemaOutdated", "safe_url", "StudyRecord", "TrialRecord", "ReportRecord",
    "CheckpointRecord", "TrialState", "TERMINAL_STATES",
]

_LAZY = {"Storage", "StorageError", "StudyNotFound", "StudyExists", "SchemaOutdated", "safe_url"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from storage import _rdb

        return getattr(_rdb, name)
    raise AttributeError(f"module 'storage' has no attribute {name!r}")


def resolve_url(url: str | None = None) -> str:
    """``url`` if given, else ``$SEARCH_STORAGE``, else the content of the file named by
    ``$SEARCH_STORAGE_FILE`` (so a password need not sit in argv or the environment), else the
    embedded SQLite default."""
    if url:
        return url
    if os.environ.get("SEARCH_STORAGE"):
        return os.environ["SEARCH_STORAGE"]
    path = os.environ.get("SEARCH_STORAGE_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return DEFAULT_URL


def _check_url(url: str) -> None:
    """One line naming the storage and the fix for a URL SQLAlchemy has no dialect for
    (instead of its NoSuchModuleError)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from storage._rdb import StorageError, safe_url

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # Storage says what a URL looks like
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        scheme = url.split("://", 1)[0]
        hint = "write postgresql:// (SQLAlchemy's name for PostgreSQL)" if scheme.split("+")[0] in (
            "postgres", "pg", "psql") else "use sqlite:///path/search.db or postgresql://user@host/db"
        raise StorageError(f"storage {safe_url(url)}: no database or driver is called {scheme!r}; {hint}") from None


def open_storage(url: str | None = None, *, create: bool = True, upgrade: bool = False) -> "Storage":
    from storage._rdb import Storage

    url = resolve_url(url)
    _check_url(url)
    return Storage(url, create=create, upgrade=upgrade)

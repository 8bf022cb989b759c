"""A database with tables of the same names that this program did not make is refused, not adopted."""
import sqlite3

import pytest

from storage import open_storage
from storage._rdb import SchemaOutdated


def test_tables_without_our_version_table_are_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(SchemaOutdated, match="no search_alembic_version table"):
        open_storage(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # nothing was written: still the one foreign table
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["studies"]

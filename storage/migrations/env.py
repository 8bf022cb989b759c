"""Alembic environment: runs on the connection ``storage`` hands it (no ini file needed)."""
from __future__ import annotations

from alembic import context

from storage._schema import Base

VERSION_TABLE = "search_alembic_version"


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()

"""Alembic's environment for the chain store: run by ``alembic.command`` (never imported).

Migrates the connection in ``config.attributes["connection"]`` (the store's, inside the
caller's transaction: ``contracts_sim.migrations.ensure_schema``) or, without one, a store
engine for the ``sqlalchemy.url`` option. Only the store's own tables are compared, so a
PostgreSQL schema shared with other software never yields ``drop_table`` operations. SQLite
migrations run in batch mode (copy-and-move), since SQLite's ALTER TABLE cannot drop or change
a column.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from contracts_sim.migrations import store_tables
from contracts_sim.store import Base, _make_engine

STORE_TABLES = store_tables(Base.metadata)


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    return type_ != "table" or name in STORE_TABLES


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_name=include_name,
        compare_type=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported: migrate a database")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no connection and no sqlalchemy.url to migrate")
    engine = _make_engine(url)
    try:
        with engine.begin() as conn:
            run_migrations(conn)
    finally:
        engine.dispose()


main()

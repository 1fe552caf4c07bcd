"""Schema management for ``SqlStore``: Alembic migrations shipped inside the package.

Every database the store opens carries its schema revision in Alembic's ``alembic_version``
table. ``ensure_schema`` (called by ``SqlStore.__init__``) brings a database to the head
revision or refuses it:

==========================================  ==================================================
what the database holds                     what happens
==========================================  ==================================================
none of the store's tables, no revision     ``create_all`` of the models, stamped at head
                                            (the fast path: no migration scripts run; the
                                            tests prove it equals running every migration)
the head revision                           nothing (one ``SELECT``)
an older revision of this code              upgraded to head, in the same transaction
a revision this code does not know          ``UnknownSchemaRevisionError`` (found and known)
the tables, no revision (made by the        stamped at the first revision, then upgraded, if
``create_all`` code before migrations)      its tables match that revision; else StoreError
==========================================  ==================================================

Why upgrade on open rather than refuse: migrations only move forward and run in one
transaction (SQLite and PostgreSQL both have transactional DDL), so a failed upgrade leaves
the database as it was, and a node operator never has to run a separate step before a newer
node starts. Why refuse an unknown revision: it was written by a newer ProofNet, and older
code reading a schema it has never seen could misread or damage it.

Concurrent openers are serialised while the schema changes: SQLite takes the write lock
(``BEGIN IMMEDIATE``), PostgreSQL a transaction-scoped advisory lock keyed on the schema. Each
re-reads the revision under the lock, so two nodes starting on one empty database create it
once.

Alembic is configured from code (``alembic_config``): no ``alembic.ini`` anywhere. To add a
migration, see docs/ledger.md ("Schema migrations") or ``python -m contracts_sim.migrations
--help``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect, select, text
from sqlalchemy.engine import Connection

from contracts_sim.exceptions import StoreError, UnknownSchemaRevisionError
from contracts_sim.store import Base

SCRIPT_LOCATION: Final = Path(__file__).resolve().parent
"""The Alembic script directory: ``env.py``, ``script.py.mako`` and ``versions/``."""

REVISION_FILE_TEMPLATE: Final = "%%(rev)s_%%(slug)s"

log = logging.getLogger(__name__)


def alembic_config(
    connection: Connection | None = None,
    url: str | None = None,
    script_location: Path = SCRIPT_LOCATION,
) -> Config:
    """An Alembic ``Config`` built in code (what an ``alembic.ini`` would hold).

    ``env.py`` migrates ``connection`` when one is given (in the caller's transaction), else a
    store opened at ``url``.
    """
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("file_template", REVISION_FILE_TEMPLATE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.lru_cache(maxsize=8)
def script_directory(script_location: Path = SCRIPT_LOCATION) -> ScriptDirectory:
    """The revisions under ``script_location`` (read once per process: opening stores is hot)."""
    return ScriptDirectory.from_config(alembic_config(script_location=script_location))


def known_revisions(script_location: Path = SCRIPT_LOCATION) -> tuple[str, ...]:
    """Every revision of this code, oldest first; the last is the head."""
    revisions = script_directory(script_location).walk_revisions("base", "heads")
    return tuple(reversed([revision.revision for revision in revisions]))


def head_revision(script_location: Path = SCRIPT_LOCATION) -> str:
    head = script_directory(script_location).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise StoreError(f"no migrations under {script_location}")
    return head


def current_revisions(conn: Connection) -> tuple[str, ...]:
    """The revisions the database is stamped with; ``()`` when it has no ``alembic_version``."""
    return tuple(MigrationContext.configure(conn).get_current_heads())


def store_tables(metadata: MetaData = Base.metadata) -> frozenset[str]:
    return frozenset(metadata.tables)


def schema_differences(conn: Connection, metadata: MetaData = Base.metadata) -> list[Any]:
    """Alembic's diff between the database and ``metadata`` (``[]`` when they match).

    Only the store's own tables are compared: a shared PostgreSQL schema may hold others.
    """
    tables = store_tables(metadata)

    def is_ours(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in tables

    context = MigrationContext.configure(conn, opts={"include_name": is_ours, "compare_type": True})
    return list(compare_metadata(context, metadata))


# --- opening a database ---------------------------------------------------------------------


def ensure_schema(
    engine: Engine,
    metadata: MetaData = Base.metadata,
    script_location: Path = SCRIPT_LOCATION,
) -> str:
    """Bring the database behind ``engine`` to the head revision (see the module docstring).

    Returns the head revision. Raises ``UnknownSchemaRevisionError`` for a revision this code
    does not know and ``StoreError`` for pre-migration tables that do not match.
    """
    head = head_revision(script_location)
    with engine.connect() as conn:
        if current_revisions(conn) == (head,):
            return head
    with schema_lock(engine) as conn:
        found = current_revisions(conn)
        if found == (head,):  # another opener got here first
            return head
        if not found:
            if not _present_store_tables(conn, metadata):
                _create_at_head(conn, metadata, script_location)
                return head
            found = (_stamp_legacy(conn, script_location),)
        known = known_revisions(script_location)
        unknown = [revision for revision in found if revision not in known]
        if unknown:
            raise UnknownSchemaRevisionError(found, known)
        if found != (head,):
            log.info("upgrading the database schema from %s to %s", ", ".join(found), head)
            command.upgrade(alembic_config(conn, script_location=script_location), "heads")
    return head


def run_migrations(
    engine: Engine, target: str = "heads", script_location: Path = SCRIPT_LOCATION
) -> None:
    """Run the migration scripts up to ``target``: no fast path (tests and autogenerate)."""
    with schema_lock(engine) as conn:
        command.upgrade(alembic_config(conn, script_location=script_location), target)


@contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the schema against other openers until it commits."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_immediate=True)  # store.py: BEGIN IMMEDIATE
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(
                    select(text("pg_advisory_xact_lock(:key)")),
                    {"key": _advisory_key(conn)},
                )
            yield conn


def _advisory_key(conn: Connection) -> int:
    """A 63-bit lock id for the current schema: openers of other schemas do not wait."""
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    digest = hashlib.sha256(f"proofnet-schema:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _present_store_tables(conn: Connection, metadata: MetaData) -> frozenset[str]:
    return store_tables(metadata) & set(inspect(conn).get_table_names())


def _create_at_head(conn: Connection, metadata: MetaData, script_location: Path) -> None:
    """A brand-new database: the models' tables, stamped at head (no scripts run)."""
    metadata.create_all(conn, checkfirst=False)  # none exists: checked under the lock
    MigrationContext.configure(conn).stamp(script_directory(script_location), "heads")


def _stamp_legacy(conn: Connection, script_location: Path) -> str:
    """Stamp a database made by the pre-migration ``create_all`` at the first revision.

    The first revision describes exactly what that code created (``frozen_schema``); tables
    that differ from it were made by something else, and the store refuses to guess.
    """
    first = known_revisions(script_location)[0]
    frozen: MetaData = script_directory(script_location).get_revision(first).module.frozen_schema()
    differences = schema_differences(conn, frozen)
    if differences:
        described = describe_differences(differences)
        shown = "; ".join(described[:3])
        more = f"; and {len(described) - 3} more" if len(described) > 3 else ""
        raise StoreError(
            "the database has ProofNet's tables but no schema revision (alembic_version), and "
            f"they differ from the first revision {first}: {shown}{more}; it was not made by "
            "ProofNet's store: use an empty database"
        )
    MigrationContext.configure(conn).stamp(script_directory(script_location), first)
    log.info("stamped a database made before migrations at schema revision %s", first)
    return first


def describe_differences(differences: Sequence[Any]) -> list[str]:
    """``compare_metadata``'s output as short lines: first what differs inside the tables that
    are there (what explains a mismatch), then the missing tables in one line."""
    flat = [d for item in differences for d in (item if isinstance(item, list) else [item])]
    missing = sorted(d[1].name for d in flat if d[0] == "add_table")
    lines = [describe_difference(d) for d in flat if _table_of(d) not in missing]
    if missing:
        lines.append(f"tables missing: {', '.join(missing)}")
    return lines


def _table_of(difference: tuple[Any, ...]) -> str:
    kind, subject = difference[0], difference[1]
    if kind.endswith("_table"):
        return str(subject.name)
    if kind.endswith(("_index", "_constraint")):
        return str(subject.table.name) if subject.table is not None else "?"
    return str(difference[2])  # columns and modify_*: (kind, schema, table, ...)


def describe_difference(difference: tuple[Any, ...]) -> str:
    """One of ``compare_metadata``'s tuples as a short readable line."""
    kind, table = difference[0], _table_of(difference)
    state = "missing" if kind.startswith("add_") else "not expected"
    if kind.endswith("_table"):
        return f"table {table} is {state}"
    if kind.endswith("_column"):
        return f"column {table}.{difference[3].name} is {state}"
    if kind.endswith(("_index", "_constraint")):
        what = "index" if kind.endswith("_index") else "constraint"
        columns = ", ".join(column.name for column in difference[1].columns)
        return f"{what} on {table}({columns}) is {state}"
    if kind.startswith("modify_"):
        found, expected = difference[5], difference[6]
        return f"column {table}.{difference[3]}: {kind[7:]} is {found}, expected {expected}"
    return str(difference)[:80]


def describe(revisions: Sequence[str]) -> str:
    """``"0001 (head)"``-style text for the CLI."""
    if not revisions:
        return "none (empty or not a ProofNet database)"
    known = known_revisions()

    def label(revision: str) -> str:
        if revision == known[-1]:
            return f"{revision} (head)"
        return revision if revision in known else f"{revision} (unknown to this code)"

    return ", ".join(label(revision) for revision in revisions)

"""The store's schema is versioned by Alembic migrations (``contracts_sim.migrations``).

* the migrations, run on an empty SQLite and an empty PostgreSQL database, build exactly the
  models' schema (Alembic's ``compare_metadata`` finds no difference), and so does the fast
  path a store takes on a brand-new database (``create_all`` stamped at head);
* a database at a revision this code does not know is refused, naming found and known;
* a database at an older known revision is upgraded when a store opens it;
* a database made before migrations (tables, no ``alembic_version``) is stamped and keeps its
  chain; tables that do not match are refused;
* stores opening one empty database at once create it once.

The PostgreSQL tests run in a fresh schema each (dropped afterwards) on the server at
``PROOFNET_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and are
skipped only when that server cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from contracts_sim.blocks import BlockHeader, check_header
from contracts_sim.chain import Chain, replay
from contracts_sim.crypto import key_from_seed
from contracts_sim.exceptions import (
    MalformedBlockError,
    StoreError,
    UnknownSchemaRevisionError,
    UnsupportedStoreFormatError,
)
from contracts_sim.migrations import (
    SCRIPT_LOCATION,
    current_revisions,
    ensure_schema,
    head_revision,
    known_revisions,
    run_migrations,
)
from contracts_sim.migrations.__main__ import main as migrations_cli
from contracts_sim.store import Base, SqlStore, _make_engine

PG_URL = os.environ.get("PROOFNET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ALICE = key_from_seed("migrations/alice")


@pytest.fixture(scope="module")
def pg_server() -> str:
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc.orig}")
    finally:
        engine.dispose()
    return PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose connections live in a fresh schema (search_path), dropped afterwards."""
    schema = f"pn_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in pg_server else "?"
    yield f"{pg_server}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chain.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    engine = _make_engine(empty_url)
    yield engine
    engine.dispose()


def model_differences(engine: Engine) -> list[object]:
    """Alembic's diff between the database and the store's models: ``[]`` when they match."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def revisions_of(engine: Engine) -> tuple[str, ...]:
    with engine.connect() as conn:
        return current_revisions(conn)


def open_chain(url: str) -> Chain:
    return Chain.open(url, "migrations-test", "test", {ALICE.address: 1_000}, genesis_time=1)


# --- an empty database ----------------------------------------------------------------------


def test_the_migrations_build_exactly_the_models_schema(engine: Engine) -> None:
    run_migrations(engine)

    assert revisions_of(engine) == (head_revision(),)
    assert model_differences(engine) == []


def test_a_new_database_is_created_at_head_without_running_the_scripts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_scripts(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a brand-new database must not run the migration scripts")

    # contracts_sim.migrations runs its scripts through alembic.command.upgrade
    monkeypatch.setattr(alembic_command, "upgrade", no_scripts)

    assert ensure_schema(engine) == head_revision()
    assert revisions_of(engine) == (head_revision(),)
    assert model_differences(engine) == []  # the fast path equals running every migration


def test_a_store_opened_twice_keeps_one_revision(empty_url: str) -> None:
    for _ in range(2):
        store = SqlStore(empty_url)
        assert store.schema_revision == head_revision()
        store.close()
    engine = _make_engine(empty_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    engine.dispose()


def test_stores_opening_one_empty_database_at_once_create_it_once(empty_url: str) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[object] = []

    def open_store() -> None:
        barrier.wait()
        try:
            store = SqlStore(empty_url)
            outcomes.append(store.schema_revision)
            store.close()
        except Exception as exc:  # the assertion below names it
            outcomes.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes == [head_revision()] * 6
    engine = _make_engine(empty_url)
    assert revisions_of(engine) == (head_revision(),)
    assert model_differences(engine) == []
    engine.dispose()


# --- revisions ------------------------------------------------------------------------------


def test_a_database_at_an_unknown_revision_is_refused(empty_url: str) -> None:
    open_chain(empty_url).close()
    engine = _make_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    engine.dispose()

    with pytest.raises(UnknownSchemaRevisionError) as refused:
        SqlStore(empty_url)

    assert refused.value.found == ("f00dfeed",)
    assert refused.value.known == known_revisions()
    assert "f00dfeed" in refused.value.message
    assert f"{head_revision()} (head)" in refused.value.message
    assert refused.value.code == "unknown_schema_revision"


def with_a_second_revision(tmp_path: Path) -> Path:
    """A copy of the package's migrations plus a revision 0099 that adds ``blocks.note``."""
    location = tmp_path / "migrations"
    shutil.copytree(
        SCRIPT_LOCATION, location, ignore=shutil.ignore_patterns("__pycache__", "__main__.py")
    )
    head = head_revision()
    (location / "versions" / "0099_block_note.py").write_text(
        f'''"""Blocks get a note."""

import sqlalchemy as sa
from alembic import op

revision = "0099"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("blocks") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("blocks") as batch:
        batch.drop_column("note")
''',
        encoding="utf-8",
    )
    return location


def test_a_database_at_an_older_revision_is_upgraded_and_keeps_its_chain(
    empty_url: str, tmp_path: Path
) -> None:
    chain = open_chain(empty_url)
    genesis_hash = chain.get_block(0).hash.hex()
    chain.close()
    location = with_a_second_revision(tmp_path)
    engine = _make_engine(empty_url)

    assert ensure_schema(engine, script_location=location) == "0099"

    assert revisions_of(engine) == ("0099",)
    assert "note" in {column["name"] for column in inspect(engine).get_columns("blocks")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT hash FROM blocks")).scalars().all() == [genesis_hash]
    engine.dispose()
    with pytest.raises(UnknownSchemaRevisionError, match="0099"):  # older code: refused
        SqlStore(empty_url)


# --- databases made before migrations -------------------------------------------------------


def test_a_database_made_before_migrations_is_stamped_and_keeps_its_chain(
    empty_url: str,
) -> None:
    chain = open_chain(empty_url)
    chain.produce_block()
    head = chain.store.head_height()
    chain.close()
    engine = _make_engine(empty_url)
    with engine.begin() as conn:  # what the create_all code left: the tables, no revision
        conn.execute(text("DROP TABLE alembic_version"))
    assert revisions_of(engine) == ()

    reopened = open_chain(empty_url)

    assert reopened.store.head_height() == head
    reopened.close()
    assert revisions_of(engine) == (head_revision(),)
    assert model_differences(engine) == []
    engine.dispose()


def test_tables_that_do_not_match_the_first_revision_are_refused(empty_url: str) -> None:
    engine = _make_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE blocks (height INTEGER PRIMARY KEY, body TEXT)"))
    engine.dispose()

    with pytest.raises(StoreError, match="no schema revision") as refused:
        SqlStore(empty_url)

    assert "blocks" in refused.value.message


# --- the command line -----------------------------------------------------------------------


def test_check_says_the_migrations_build_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert migrations_cli(["check"]) == 0
    assert "the migrations build the models' schema" in capsys.readouterr().out


def test_current_and_upgrade_name_the_revision(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrations_cli(["current", sqlite_url]) == 0
    assert "database: none" in capsys.readouterr().out
    assert migrations_cli(["upgrade", sqlite_url]) == 0
    assert f"database: {head_revision()} (head)" in capsys.readouterr().out


def test_an_unknown_revision_is_one_line_on_stderr(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    SqlStore(sqlite_url).close()
    engine = _make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    engine.dispose()

    assert migrations_cli(["upgrade", sqlite_url]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: unknown_schema_revision: ")
    assert err.count("\n") == 1


# --- data migrations ------------------------------------------------------------------------


def test_a_format_3_chain_gets_its_headers_signed_and_keeps_its_hashes(sqlite_url: str) -> None:
    """0002: a chain stored before headers carried the producer's signature is signed with the
    key the store keeps; block hashes, the head and replay from genesis are unchanged."""
    chain = open_chain(sqlite_url)
    chain.produce_block()
    chain.produce_block()
    blocks = [chain.get_block(height) for height in range(3)]
    chain.close()
    engine = _make_engine(sqlite_url)
    with engine.begin() as conn:  # what format 3 left at revision 0001
        for height, encoded in conn.execute(text("SELECT height, header FROM blocks")).all():
            header = json.loads(encoded)
            del header["producer_signature"]
            conn.execute(
                text("UPDATE blocks SET header = :header WHERE height = :height"),
                {"header": json.dumps(header), "height": height},
            )
        meta = json.loads(conn.execute(text("SELECT value FROM meta WHERE key = 'chain'")).one()[0])
        conn.execute(
            text("UPDATE meta SET value = :value WHERE key = 'chain'"),
            {"value": json.dumps({**meta, "format": 3})},
        )
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    with pytest.raises(MalformedBlockError):  # unreadable as format 4 until migrated
        with engine.connect() as conn:
            encoded = conn.execute(text("SELECT header FROM blocks WHERE height = 1")).one()[0]
        BlockHeader.from_json(json.loads(encoded))

    reopened = open_chain(sqlite_url)

    assert revisions_of(engine) == (head_revision(),)
    assert [reopened.get_block(height) for height in range(3)] == blocks
    for block in blocks:
        check_header(block.header, reopened.beacon_public_key)
    replay(reopened.store)
    reopened.produce_block()
    reopened.close()
    engine.dispose()


def _set_stored_format(engine: Engine, found: int, revision: str) -> None:
    """Rewind a stored chain to store format ``found`` at schema revision ``revision``."""
    with engine.begin() as conn:
        meta = json.loads(conn.execute(text("SELECT value FROM meta WHERE key = 'chain'")).one()[0])
        conn.execute(
            text("UPDATE meta SET value = :value WHERE key = 'chain'"),
            {"value": json.dumps({**meta, "format": found})},
        )
        conn.execute(text("UPDATE alembic_version SET version_num = :rev"), {"rev": revision})


def test_a_format_4_chain_without_disputes_is_raised_to_format_5(sqlite_url: str) -> None:
    """0003: with no dispute stored, format 4's state roots are format 5's: only the format
    number changes, and the chain replays from genesis."""
    chain = open_chain(sqlite_url)
    chain.produce_block()
    blocks = [chain.get_block(height) for height in range(2)]
    chain.close()
    engine = _make_engine(sqlite_url)
    _set_stored_format(engine, 4, "0002")

    reopened = open_chain(sqlite_url)

    assert revisions_of(engine) == (head_revision(),)
    assert [reopened.get_block(height) for height in range(2)] == blocks
    replay(reopened.store)
    reopened.close()
    engine.dispose()


def test_a_format_4_chain_that_held_a_dispute_stays_refused(sqlite_url: str) -> None:
    """0003: a stored dispute record has format 4's JSON (no ``resolution``): its roots cannot
    be reproduced, so the chain keeps format 4 and opening it is refused."""
    chain = open_chain(sqlite_url)
    chain.produce_block()
    chain.close()
    engine = _make_engine(sqlite_url)
    _set_stored_format(engine, 4, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO state_records (table_name, key, value) VALUES ('disputes', :k, '{}')"
            ),
            {"k": "ab" * 32},
        )

    with pytest.raises(UnsupportedStoreFormatError) as err:
        open_chain(sqlite_url)

    assert err.value.found == 4
    assert revisions_of(engine) == (head_revision(),)
    engine.dispose()

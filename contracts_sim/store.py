"""Persistence for the chain: blocks, transactions, receipts, events and state records.

Persistence is separate from the rules: the block producer (``chain.Chain``) hands a store one
``BlockCommit`` per block and the store writes all of it in ONE database transaction — the block,
its transactions, the failed receipts, its events and every state record the block changed
(``LedgerState.dirty_keys()``). A crash leaves either the whole block or none of it.

Two implementations of ``ChainStore``:

* ``SqlStore(url)`` — SQLAlchemy 2. ``sqlite:///path.db`` (the embedded default: WAL journal,
  busy timeout, ``BEGIN IMMEDIATE`` for writers) or ``postgresql+psycopg://…``.
* ``MemoryStore()`` — the same contract in dicts, for simulations with a virtual clock.

Tables (``SqlStore``)::

    meta           key PK                      → JSON (the ChainMeta under "chain", the
                                                  producer's beacon key under "beacon_key")
    blocks         height PK, hash UNIQUE      → header JSON
    transactions   hash UNIQUE, block_height, idx, status, error → tx JSON (its
                                                  canonical envelope, ``envelope_bytes``)
    events         id PK, height, tx_hash, kind, job_id, dispute_id → data JSON
    state_records  (table_name, key) PK        → record JSON
    alembic_version version_num PK             ← the schema revision (Alembic)

The schema is versioned by the Alembic migrations in ``contracts_sim.migrations``: opening a
``SqlStore`` creates an empty database at the head revision, upgrades one at an older revision,
stamps one made before migrations existed, and refuses one at a revision this code does not
know (``UnknownSchemaRevisionError``). The models below are the head; a change to them needs a
new revision (docs/ledger.md, "Schema migrations").

Why two writers cannot double-apply: every block is inserted at ``head + 1`` of the writer's own
view, and ``blocks.height`` is the primary key, so of two writers that build on the same head
only one commits; the other gets ``BlockConflictError`` and its whole transaction (state rows
included) rolls back. ``transactions.hash`` is UNIQUE as a second line of defence. A failed
receipt is kept until the same transaction is applied later (its row is then replaced), so a
sender can re-send a transaction that failed for lack of funds.

State rows are stored, not the state tree: ``load_state`` rebuilds the sparse Merkle tree
from the rows once (``LedgerState.from_json``; docs/state-commitment.md has its cost), and
``Chain.open`` checks its root against the head block's. Rows a block deleted (an account back
to empty, a block hash out of the window) are deleted here in the same transaction.

The producer's beacon key (``contracts_sim.beacon``) is written with the genesis block and read
back on every open, so a restarted node signs with the key fixed at genesis. It is stored
unencrypted: this is a simulated chain, not a custody solution.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from sqlalchemy import (
    BigInteger,
    Engine,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

from contracts_sim.blocks import Block, BlockHeader, ChainEvent, ErrorInfo, Receipt
from contracts_sim.exceptions import (
    BlockConflictError,
    CorruptStateError,
    StoreError,
    UnsupportedStoreFormatError,
)
from contracts_sim.params import Params
from contracts_sim.state import TABLES, LedgerState
from contracts_sim.transactions import Transaction
from protocol.errors import ProofNetError
from protocol.types import Address, Height

SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
META_KEY: Final = "chain"
BEACON_KEY_META_KEY: Final = "beacon_key"
ALEMBIC_VERSION_TABLE: Final = "alembic_version"  # the schema revision (migrations/)
STORE_FORMAT: Final = 5
"""2: block headers carry a beacon, the meta holds the producer key; 3: state roots are sparse
Merkle roots (docs/state-commitment.md) and block_hashes keeps a window; 4: headers carry the
producer's signature of their hash (migration 0002 signs a format-3 chain's headers with its
stored key); 5: a dispute record carries its ``resolution`` (every state root from the first
dispute on differs, and the signed headers commit to them, so no migration can carry a format-4
chain over). A chain stored in another format is refused on open (its roots do not
reproduce)."""

StateChange = tuple[str, str, Any]
"""``(table, key, record JSON)``; a ``None`` record deletes the row."""


# --- errors ---------------------------------------------------------------------------------


# --- what the chain hands the store ---------------------------------------------------------


@dataclass(frozen=True)
class ChainMeta:
    """What defines a chain: stored once at genesis, checked on every open."""

    chain_id: str
    preset: str  # a name in params.PRESETS, or "custom"
    params: Params
    genesis_allocations: dict[Address, int]
    genesis_time: int
    beacon_public_key: bytes  # DER of the producer's RSA key; verifies every header's beacon
    format: int = STORE_FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "preset": self.preset,
            "params": self.params.to_json(),
            "genesis_allocations": dict(sorted(self.genesis_allocations.items())),
            "genesis_time": self.genesis_time,
            "beacon_public_key": self.beacon_public_key.hex(),
            "format": self.format,
        }

    @classmethod
    def from_json(cls, data: Any) -> ChainMeta:
        try:
            found = int(data["format"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStateError(f"stored chain metadata is malformed: {exc}") from exc
        if found != STORE_FORMAT:
            raise UnsupportedStoreFormatError(found, STORE_FORMAT)
        try:
            return cls(
                chain_id=str(data["chain_id"]),
                preset=str(data["preset"]),
                params=Params.from_json(data["params"]),
                genesis_allocations={
                    Address(a): int(v) for a, v in data["genesis_allocations"].items()
                },
                genesis_time=int(data["genesis_time"]),
                beacon_public_key=bytes.fromhex(data["beacon_public_key"]),
                format=found,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptStateError(f"stored chain metadata is malformed: {exc}") from exc


@dataclass(frozen=True)
class BlockCommit:
    """Everything one block changes, written in one database transaction."""

    block: Block
    receipts: tuple[Receipt, ...]  # the applied ones, in block order
    failed: tuple[tuple[Transaction, Receipt], ...] = ()  # dropped when the block was sealed
    events: tuple[ChainEvent, ...] = ()  # every event of the block, ids ascending
    state_changes: tuple[StateChange, ...] = field(default=())


def collect_state_changes(state: LedgerState) -> tuple[StateChange, ...]:
    """The rows to write back after a block: every dirty key, as JSON (None = deleted)."""
    return tuple(
        (table, str(key), state.record_to_json(table, key))
        for table, key in sorted(state.dirty_keys(), key=lambda tk: (tk[0], str(tk[1])))
    )


def state_from_records(rows: Mapping[str, Mapping[str, Any]]) -> LedgerState:
    """Rebuild a LedgerState from stored rows (``table -> key -> JSON``)."""
    return LedgerState.from_json({table: dict(rows.get(table, {})) for table in TABLES})


class ChainStore(Protocol):
    """Where a chain keeps its blocks, receipts, events and state (see the module docstring)."""

    def load_meta(self) -> ChainMeta | None: ...
    def load_beacon_key(self) -> bytes | None: ...  # PKCS#8 DER, stored by ``initialize``
    def initialize(self, meta: ChainMeta, commit: BlockCommit, beacon_key: bytes) -> None: ...
    def commit_block(self, commit: BlockCommit) -> None: ...
    def head_height(self) -> Height | None: ...
    def get_header(self, height: int) -> BlockHeader | None: ...
    def get_block(self, height: int) -> Block | None: ...
    def iter_blocks(self, start: int = 0) -> Iterator[Block]: ...
    def get_receipt(self, tx_hash: str) -> Receipt | None: ...
    def applied_among(self, tx_hashes: Sequence[str]) -> set[str]: ...
    def events_since(self, since: int, limit: int) -> list[ChainEvent]: ...
    def events_for(
        self, *, job_id: str | None = None, dispute_id: str | None = None, limit: int = 1000
    ) -> list[ChainEvent]: ...
    def last_event_id(self) -> int: ...
    def load_state(self) -> LedgerState: ...
    def close(self) -> None: ...


def _event_subject(event: ChainEvent, name: str) -> str | None:
    value = event.data.get(name)
    return value if isinstance(value, str) else None


# --- in memory ------------------------------------------------------------------------------


class MemoryStore:
    """``ChainStore`` in dicts: fast, thread-safe, gone with the process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._meta: ChainMeta | None = None
        self._beacon_key: bytes | None = None
        self._blocks: list[Block] = []
        self._receipts: dict[str, Receipt] = {}
        self._events: list[ChainEvent] = []
        self._by_subject: dict[tuple[str, str], list[ChainEvent]] = {}
        self._state: dict[str, dict[str, Any]] = {table: {} for table in TABLES}

    def load_meta(self) -> ChainMeta | None:
        return self._meta

    def load_beacon_key(self) -> bytes | None:
        return self._beacon_key

    def initialize(self, meta: ChainMeta, commit: BlockCommit, beacon_key: bytes) -> None:
        with self._lock:
            if self._meta is not None:
                raise BlockConflictError(0, "the chain is already initialized")
            self._meta = meta
            self._beacon_key = bytes(beacon_key)
            self._commit(commit)

    def commit_block(self, commit: BlockCommit) -> None:
        with self._lock:
            if self._meta is None:
                raise StoreError("commit_block before initialize")
            self._commit(commit)

    def _commit(self, commit: BlockCommit) -> None:
        height = commit.block.height
        if height != len(self._blocks):
            raise BlockConflictError(height, f"the stored head is {len(self._blocks) - 1}")
        applied = {r.tx_hash for r in commit.receipts}
        clash = [h for h in applied if self._is_applied(h)]
        if clash:
            raise BlockConflictError(height, f"transaction {clash[0]} is already applied")
        self._blocks.append(commit.block)
        for receipt in commit.receipts:
            self._receipts[receipt.tx_hash] = receipt
        for _, receipt in commit.failed:
            if not self._is_applied(receipt.tx_hash):
                self._receipts[receipt.tx_hash] = receipt
        self._events.extend(commit.events)
        for recorded in commit.events:
            for name in ("job_id", "dispute_id"):
                subject = _event_subject(recorded, name)
                if subject is not None:
                    self._by_subject.setdefault((name, subject), []).append(recorded)
        for table, key, value in commit.state_changes:
            if value is None:
                self._state[table].pop(key, None)
            else:
                self._state[table][key] = value

    def _is_applied(self, tx_hash: str) -> bool:
        receipt = self._receipts.get(tx_hash)
        return receipt is not None and receipt.status == "applied"

    def head_height(self) -> Height | None:
        return Height(len(self._blocks) - 1) if self._blocks else None

    def get_header(self, height: int) -> BlockHeader | None:
        block = self.get_block(height)
        return None if block is None else block.header

    def get_block(self, height: int) -> Block | None:
        with self._lock:
            return self._blocks[height] if 0 <= height < len(self._blocks) else None

    def iter_blocks(self, start: int = 0) -> Iterator[Block]:
        with self._lock:
            blocks = self._blocks[start:]
        yield from blocks

    def get_receipt(self, tx_hash: str) -> Receipt | None:
        return self._receipts.get(tx_hash)

    def applied_among(self, tx_hashes: Sequence[str]) -> set[str]:
        with self._lock:
            return {h for h in tx_hashes if self._is_applied(h)}

    def events_since(self, since: int, limit: int) -> list[ChainEvent]:
        with self._lock:
            # ids are 1, 2, 3, ... in list order
            start = max(since, 0)
            return self._events[start : start + max(limit, 0)]

    def events_for(
        self, *, job_id: str | None = None, dispute_id: str | None = None, limit: int = 1000
    ) -> list[ChainEvent]:
        with self._lock:
            if job_id is not None:
                candidates = self._by_subject.get(("job_id", job_id), [])
            elif dispute_id is not None:
                candidates = self._by_subject.get(("dispute_id", dispute_id), [])
            else:
                candidates = self._events
            found = [
                e
                for e in candidates
                if dispute_id is None or _event_subject(e, "dispute_id") == dispute_id
            ]
        return found[:limit]

    def last_event_id(self) -> int:
        return len(self._events)

    def load_state(self) -> LedgerState:
        with self._lock:
            return state_from_records(self._state)

    def close(self) -> None:
        pass


# --- SQLAlchemy models ----------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class BlockRow(Base):
    __tablename__ = "blocks"

    height: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    header: Mapped[str] = mapped_column(Text)
    tx_count: Mapped[int] = mapped_column(Integer)


class TxRow(Base):
    __tablename__ = "transactions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    block_height: Mapped[int] = mapped_column(BigInteger)
    idx: Mapped[int | None] = mapped_column(Integer)  # position in the block; None if failed
    status: Mapped[str] = mapped_column(String(16))  # "applied" or "failed"
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text)  # the signed envelope JSON

    __table_args__ = (Index("ix_transactions_block", "block_height", "idx"),)


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    height: Mapped[int] = mapped_column(BigInteger, index=True)
    tx_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    dispute_id: Mapped[str | None] = mapped_column(String(64), index=True)
    data: Mapped[str] = mapped_column(Text)


class StateRow(Base):
    __tablename__ = "state_records"

    table_name: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _position(receipt: Receipt) -> int:
    if receipt.index is None:
        raise ValueError(f"applied receipt {receipt.tx_hash} has no position")
    return receipt.index


def _event_from_row(row: Any) -> ChainEvent:
    return ChainEvent(
        id=row.id,
        height=Height(row.height),
        tx_hash=row.tx_hash,
        kind=row.kind,
        data=json.loads(row.data),
    )


# --- SQL ------------------------------------------------------------------------------------


def _is_sqlite_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if _is_sqlite_memory(url):
            engine = create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            if parsed.database:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            )
        _configure_sqlite(engine, wal=not _is_sqlite_memory(url))
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise StoreError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    """WAL + busy timeout, and SQLAlchemy (not pysqlite) in charge of BEGIN.

    Writers begin with ``BEGIN IMMEDIATE`` (execution option ``sqlite_immediate``), so two
    writers queue on the database lock instead of deadlocking on a lock upgrade.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def quiet_alembic_info_logs() -> None:
    """Alembic logs its plugins (on import) and its dialect (on each run) at INFO: noise in a
    node's log on every start. ``contracts_sim.migrations`` logs at INFO when a schema really
    changes. Only a level nobody set is changed; set the "alembic" logger's level to see more.
    """
    alembic_logger = logging.getLogger("alembic")
    if alembic_logger.level == logging.NOTSET:
        alembic_logger.setLevel(logging.WARNING)


class SqlStore:
    """``ChainStore`` on SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        # One shared connection (in-memory SQLite) must not be used by two threads at once.
        self._lock: AbstractContextManager[Any] = (
            threading.RLock() if _is_sqlite_memory(url) else nullcontext()
        )
        self.schema_revision = self._ensure_schema()

    def _ensure_schema(self) -> str:
        """Create, check or upgrade the schema (``contracts_sim.migrations``); its revision.

        Imported here, not at the top: the migrations import this module's models, and Alembic
        is only needed once a SQL store is opened.
        """
        quiet_alembic_info_logs()
        from contracts_sim.migrations import ensure_schema

        try:
            return ensure_schema(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the database: {exc.__class__.__name__}: {exc}") from exc
        except ProofNetError:
            self.engine.dispose()
            raise

    # --- writing ----------------------------------------------------------------------------

    def _write(self) -> Any:
        conn = self.engine.connect()
        if self.dialect == "sqlite":
            conn = conn.execution_options(sqlite_immediate=True)
        return conn

    def initialize(self, meta: ChainMeta, commit: BlockCommit, beacon_key: bytes) -> None:
        with self._lock:
            try:
                with self._write() as conn, conn.begin():
                    conn.execute(insert(MetaRow).values(key=META_KEY, value=_dumps(meta.to_json())))
                    conn.execute(
                        insert(MetaRow).values(
                            key=BEACON_KEY_META_KEY, value=_dumps(beacon_key.hex())
                        )
                    )
                    self._insert_block(conn, commit)
            except IntegrityError as exc:
                raise BlockConflictError(0, "the chain is already initialized") from exc
            except OperationalError as exc:
                raise StoreError(f"database error: {exc.orig}") from exc

    def commit_block(self, commit: BlockCommit) -> None:
        """Write one block and everything it changed, in one transaction."""
        height = commit.block.height
        with self._lock:
            try:
                with self._write() as conn, conn.begin():
                    parent = conn.execute(
                        select(BlockRow.hash).where(BlockRow.height == height - 1)
                    ).scalar_one_or_none()
                    if parent != commit.block.header.parent_hash.hex():
                        raise BlockConflictError(height, "its parent is not the stored block")
                    self._insert_block(conn, commit)
            except IntegrityError as exc:
                raise BlockConflictError(height, "height or transaction already stored") from exc
            except OperationalError as exc:
                raise StoreError(f"database error: {exc.orig}") from exc

    def _insert_block(self, conn: Connection, commit: BlockCommit) -> None:
        block = commit.block
        height = block.height
        # The block row first: a second writer at this height blocks or fails here.
        conn.execute(
            insert(BlockRow).values(
                height=height,
                hash=block.hash.hex(),
                header=_dumps(block.header.to_json()),
                tx_count=len(block.transactions),
            )
        )
        applied = commit.receipts
        if applied:
            # A transaction that failed earlier and is applied now replaces its failed row.
            conn.execute(
                delete(TxRow).where(
                    TxRow.status == "failed", TxRow.hash.in_([r.tx_hash for r in applied])
                )
            )
            txs = block.transactions  # receipts are in block order: index = position
            conn.execute(
                insert(TxRow),
                [
                    {
                        "hash": r.tx_hash,
                        "block_height": height,
                        "idx": r.index,
                        "status": "applied",
                        "error_code": None,
                        "error_message": None,
                        "data": txs[_position(r)].envelope_bytes().decode(),
                    }
                    for r in applied
                ],
            )
        if commit.failed:
            self._upsert_failed(conn, height, commit.failed)
        if commit.events:
            conn.execute(
                insert(EventRow),
                [
                    {
                        "id": e.id,
                        "height": e.height,
                        "tx_hash": e.tx_hash,
                        "kind": e.kind,
                        "job_id": _event_subject(e, "job_id"),
                        "dispute_id": _event_subject(e, "dispute_id"),
                        "data": _dumps(e.data),
                    }
                    for e in commit.events
                ],
            )
        self._write_state(conn, commit.state_changes)

    def _upsert_failed(
        self, conn: Connection, height: int, failed: Sequence[tuple[Transaction, Receipt]]
    ) -> None:
        # The latest failure wins; an applied row is never overwritten.
        hashes = [r.tx_hash for _, r in failed]
        existing = set(conn.execute(select(TxRow.hash).where(TxRow.hash.in_(hashes))).scalars())
        for tx, receipt in failed:
            assert receipt.error is not None
            values = {
                "block_height": height,
                "idx": None,
                "status": "failed",
                "error_code": receipt.error.code,
                "error_message": receipt.error.message,
            }
            if receipt.tx_hash in existing:
                conn.execute(
                    update(TxRow)
                    .where(TxRow.hash == receipt.tx_hash, TxRow.status == "failed")
                    .values(**values)
                )
            else:
                data = tx.envelope_bytes().decode()
                conn.execute(insert(TxRow).values(hash=receipt.tx_hash, data=data, **values))

    def _write_state(self, conn: Connection, changes: Sequence[StateChange]) -> None:
        upserts = [
            {"table_name": t, "key": k, "value": _dumps(v)} for t, k, v in changes if v is not None
        ]
        deletes: dict[str, list[str]] = {}
        for table, key, value in changes:
            if value is None:
                deletes.setdefault(table, []).append(key)
        for table, keys in deletes.items():
            conn.execute(
                delete(StateRow).where(StateRow.table_name == table, StateRow.key.in_(keys))
            )
        if upserts:
            dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            stmt = dialect_insert(StateRow)
            stmt = stmt.on_conflict_do_update(
                index_elements=[StateRow.table_name, StateRow.key],
                set_={"value": stmt.excluded.value},
            )
            conn.execute(stmt, upserts)

    # --- reading ----------------------------------------------------------------------------

    def _read(self) -> Any:
        return self.engine.connect()

    def load_meta(self) -> ChainMeta | None:
        with self._lock, self._read() as conn:
            raw = conn.execute(
                select(MetaRow.value).where(MetaRow.key == META_KEY)
            ).scalar_one_or_none()
        return None if raw is None else ChainMeta.from_json(json.loads(raw))

    def load_beacon_key(self) -> bytes | None:
        with self._lock, self._read() as conn:
            raw = conn.execute(
                select(MetaRow.value).where(MetaRow.key == BEACON_KEY_META_KEY)
            ).scalar_one_or_none()
        if raw is None:
            return None
        try:
            return bytes.fromhex(json.loads(raw))
        except (TypeError, ValueError) as exc:
            raise CorruptStateError(f"the stored beacon key is malformed: {exc}") from exc

    def head_height(self) -> Height | None:
        with self._lock, self._read() as conn:
            height = conn.execute(select(func.max(BlockRow.height))).scalar_one_or_none()
        return None if height is None else Height(height)

    def get_header(self, height: int) -> BlockHeader | None:
        with self._lock, self._read() as conn:
            raw = conn.execute(
                select(BlockRow.header).where(BlockRow.height == height)
            ).scalar_one_or_none()
        return None if raw is None else BlockHeader.from_json(json.loads(raw))

    def get_block(self, height: int) -> Block | None:
        blocks = self._blocks_between(height, height + 1)
        return blocks[0] if blocks else None

    def _blocks_between(self, lo: int, hi: int) -> list[Block]:
        with self._lock, self._read() as conn:
            headers = conn.execute(
                select(BlockRow.height, BlockRow.header)
                .where(BlockRow.height >= lo, BlockRow.height < hi)
                .order_by(BlockRow.height)
            ).all()
            txs = conn.execute(
                select(TxRow.block_height, TxRow.data)
                .where(TxRow.block_height >= lo, TxRow.block_height < hi, TxRow.status == "applied")
                .order_by(TxRow.block_height, TxRow.idx)
            ).all()
        by_height: dict[int, list[Transaction]] = {}
        for height, data in txs:
            by_height.setdefault(height, []).append(Transaction.from_json(json.loads(data)))
        return [
            Block(BlockHeader.from_json(json.loads(header)), tuple(by_height.get(height, [])))
            for height, header in headers
        ]

    def iter_blocks(self, start: int = 0, page: int = 256) -> Iterator[Block]:
        head = self.head_height()
        if head is None:
            return
        lo = start
        while lo <= head:
            yield from self._blocks_between(lo, lo + page)
            lo += page

    def get_receipt(self, tx_hash: str) -> Receipt | None:
        with self._lock, self._read() as conn:
            row = conn.execute(select(TxRow).where(TxRow.hash == tx_hash)).one_or_none()
            if row is None:
                return None
            if row.status != "applied":
                return Receipt(
                    tx_hash=tx_hash,
                    status="failed",
                    height=Height(row.block_height),
                    error=ErrorInfo(row.error_code or "", row.error_message or ""),
                )
            events = conn.execute(
                select(EventRow).where(EventRow.tx_hash == tx_hash).order_by(EventRow.id)
            ).all()
            return Receipt(
                tx_hash=tx_hash,
                status="applied",
                height=Height(row.block_height),
                index=row.idx,
                events=tuple(_event_from_row(e) for e in events),
            )

    def applied_among(self, tx_hashes: Sequence[str]) -> set[str]:
        if not tx_hashes:
            return set()
        with self._lock, self._read() as conn:
            rows = conn.execute(
                select(TxRow.hash).where(TxRow.hash.in_(list(tx_hashes)), TxRow.status == "applied")
            ).scalars()
            return set(rows)

    def events_since(self, since: int, limit: int) -> list[ChainEvent]:
        with self._lock, self._read() as conn:
            rows = conn.execute(
                select(EventRow).where(EventRow.id > since).order_by(EventRow.id).limit(limit)
            ).all()
            return [_event_from_row(r) for r in rows]

    def events_for(
        self, *, job_id: str | None = None, dispute_id: str | None = None, limit: int = 1000
    ) -> list[ChainEvent]:
        query = select(EventRow)
        if job_id is not None:
            query = query.where(EventRow.job_id == job_id)
        if dispute_id is not None:
            query = query.where(EventRow.dispute_id == dispute_id)
        with self._lock, self._read() as conn:
            rows = conn.execute(query.order_by(EventRow.id).limit(limit)).all()
            return [_event_from_row(r) for r in rows]

    def last_event_id(self) -> int:
        with self._lock, self._read() as conn:
            value = conn.execute(select(func.max(EventRow.id))).scalar_one_or_none()
        return int(value or 0)

    def load_state(self) -> LedgerState:
        rows: dict[str, dict[str, Any]] = {table: {} for table in TABLES}
        with self._lock, self._read() as conn:
            for table, key, value in conn.execute(
                select(StateRow.table_name, StateRow.key, StateRow.value)
            ):
                if table not in rows:
                    raise CorruptStateError(f"state_records has an unknown table {table!r}")
                rows[table][key] = json.loads(value)
        return state_from_records(rows)

    def drop_all(self) -> None:
        """Drop every table, the schema revision included (tests)."""
        Base.metadata.drop_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {ALEMBIC_VERSION_TABLE}"))

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str | None) -> ChainStore:
    """``MemoryStore`` for ``None`` or ``"memory://"``, else ``SqlStore(url)``."""
    if url is None or url == "memory://":
        return MemoryStore()
    return SqlStore(url)

"""The ledger state: tables of frozen records, with an undo journal and a Merkle commitment.

Tables (key → record)::

    accounts      Address (0x + 40 hex)   → Account      (absent = the empty Account)
    jobs          job id (64 hex)         → Job
    disputes      dispute id (64 hex)     → Dispute
    block_hashes  height (int)            → Hash32       (hash of block ``height``; only the
                                                          last BLOCK_HASH_WINDOW heights)
    beacons       height (int)            → Hash32       (beacon output of block ``height``)
    supply        "total"                 → Supply       (genesis, minted, burned)

House rules
    * Every write goes through ``put`` / ``delete``. Inside ``begin()`` … ``commit()`` /
      ``rollback()`` each write records the previous value, so ``rollback`` restores the state
      exactly (journals nest, as in execution-specs' ``begin_transaction``).
    * Every write marks ``(table, key)`` dirty until ``clear_dirty()``; a persistence layer
      writes back exactly ``dirty_keys()`` after a block. A rolled-back write is not dirty
      (each journal entry remembers whether its key was dirty before; call ``clear_dirty``
      outside a unit).
    * ``state_root()`` is the root of a sparse Merkle tree over every row
      (``contracts_sim.state_tree``, docs/state-commitment.md): leaf = the row's key path and
      the hash of its record's canonical JSON. A write only marks its row *stale*; the next
      ``state_root()`` or ``prove()`` re-hashes the stale rows' paths, so a block costs
      O(rows changed · log rows), not O(state). Deterministic and independent of insertion
      order. An account equal to ``Account()`` is never stored, so touching an account without
      changing it does not change the root. A state loaded from rows (``from_json``) builds
      its tree there, once, from the rows' JSON.
    * Records and tree nodes are immutable, and each table is ``Rows``: shards copied on write.
      So ``copy()`` shares the shards and the tree, and costs O(shards), not O(rows); the
      first write to a shard after a copy copies that shard alone.
    * ``block_hashes`` keeps the last ``BLOCK_HASH_WINDOW`` heights: ``set_block_hash`` deletes
      the one that falls out (the rules read only the parent's and its parent's hash), so the
      state does not grow with height through it. Blocks stay stored: replay from genesis
      re-applies the same deletions.

Typed accessors (``get_account``, ``get_job`` …) and the money mutators at the bottom of the
module (``increase_balance``, ``decrease_balance``, ``mint``, ``burn``) are what the rules use.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any, Final

from contracts_sim.codec import from_json_value, to_json_value
from contracts_sim.exceptions import (
    CorruptStateError,
    DisputeNotFoundError,
    InsufficientBalanceError,
    JobNotFoundError,
)
from contracts_sim.records import Account, Dispute, Job, Supply
from contracts_sim.state_tree import (
    Change,
    Node,
    StateProof,
    build,
    key_path,
    make_leaf,
    node_hash,
    prove,
    update,
)
from protocol.types import Address, Amount, Hash32, Height

Key = str | int

ACCOUNTS: Final = "accounts"
JOBS: Final = "jobs"
DISPUTES: Final = "disputes"
BLOCK_HASHES: Final = "block_hashes"
BEACONS: Final = "beacons"
SUPPLY: Final = "supply"
SUPPLY_KEY: Final = "total"
BLOCK_HASH_WINDOW: Final = 256
"""Heights ``block_hashes`` keeps (as the EVM's BLOCKHASH serves the last 256 blocks)."""

TABLES: Final[dict[str, tuple[type, Any]]] = {
    # table: (key type, record type)
    ACCOUNTS: (str, Account),
    JOBS: (str, Job),
    DISPUTES: (str, Dispute),
    BLOCK_HASHES: (int, Hash32),
    BEACONS: (int, Hash32),
    SUPPLY: (str, Supply),
}

_MISSING: Final = object()

JournalEntry = tuple[str, Key, Any, bool]
"""``(table, key, previous record or _MISSING, whether the key was dirty before)``."""


ROW_SHARDS: Final = 256
_SHARD_MASK: Final = ROW_SHARDS - 1
_NO_ROWS: Final[dict[Key, Any]] = {}  # the shard of a fresh table; never written (not owned)


class Rows:
    """One table's rows (a dict's interface), in ``ROW_SHARDS`` shards copied on write.

    ``copy()`` shares every shard with the original and both give up ownership of them; the
    first write to a shard copies that shard only (about n/256 rows). So copying a state is
    O(shards), not O(rows), and a block that writes k rows copies at most k shards. A shard is
    chosen by Python's ``hash`` of the key: internal only (iteration is sorted by callers).
    """

    __slots__ = ("_owned", "_shards", "_size")

    def __init__(self) -> None:
        self._shards: list[dict[Key, Any]] = [_NO_ROWS] * ROW_SHARDS
        self._owned = [False] * ROW_SHARDS
        self._size = 0

    def get(self, key: Key, default: Any = None) -> Any:
        return self._shards[hash(key) & _SHARD_MASK].get(key, default)

    def __getitem__(self, key: Key) -> Any:
        return self._shards[hash(key) & _SHARD_MASK][key]

    def __contains__(self, key: object) -> bool:
        return key in self._shards[hash(key) & _SHARD_MASK]

    def __setitem__(self, key: Key, record: Any) -> None:
        shard = self._writable(hash(key) & _SHARD_MASK)
        self._size += key not in shard
        shard[key] = record

    def pop(self, key: Key, default: Any = None) -> Any:
        index = hash(key) & _SHARD_MASK
        if key not in self._shards[index]:
            return default
        self._size -= 1
        return self._writable(index).pop(key)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Key]:
        for shard in self._shards:
            yield from shard

    def _writable(self, index: int) -> dict[Key, Any]:
        if not self._owned[index]:
            self._shards[index] = dict(self._shards[index])
            self._owned[index] = True
        return self._shards[index]

    def copy(self) -> Rows:
        """The same rows, sharing every shard (neither side owns them any more)."""
        other = Rows()
        other._shards, other._size = list(self._shards), self._size
        self._owned = [False] * ROW_SHARDS
        return other


def _record_type(table: str) -> type:
    record_type = TABLES[table][1]
    return getattr(record_type, "__supertype__", record_type)  # type: ignore[no-any-return]


class LedgerState:
    """All ledger data. See the module docstring for the tables and the journal."""

    def __init__(self) -> None:
        self._tables: dict[str, Rows] = {name: Rows() for name in TABLES}
        self._journals: list[list[JournalEntry]] = []
        self._dirty: set[tuple[str, Key]] = set()
        self._tree: Node = None  # the commitment to every row not in _stale
        self._stale: set[tuple[str, Key]] = set()  # rows written since the tree was updated
        self._encoded: dict[tuple[str, Key], tuple[Any, Any]] = {}  # row -> (record, its JSON)
        self._tree_lock = threading.Lock()  # readers of a shared head state may both update

    # --- raw table access ---------------------------------------------------------------

    def get(self, table: str, key: Key) -> Any | None:
        return self._tables[table].get(key)

    def put(self, table: str, key: Key, record: Any) -> None:
        """Write ``record`` at ``key`` (journaled, marked dirty)."""
        key_type, _ = TABLES[table]
        if not isinstance(key, key_type) or isinstance(key, bool):
            raise TypeError(f"{table} keys are {key_type.__name__}, got {key!r}")
        if not isinstance(record, _record_type(table)):
            raise TypeError(f"{table} holds {_record_type(table).__name__}, got {record!r}")
        self._write(table, key, record)

    def delete(self, table: str, key: Key) -> None:
        if key in self._tables[table]:
            self._write(table, key, _MISSING)

    def _write(self, table: str, key: Key, record: Any) -> None:
        rows = self._tables[table]
        row = (table, key)
        if self._journals:
            self._journals[-1].append((table, key, rows.get(key, _MISSING), row in self._dirty))
        if record is _MISSING:
            rows.pop(key)
        else:
            rows[key] = record
        self._dirty.add(row)
        self._stale.add(row)

    def keys(self, table: str) -> list[Key]:
        return sorted(self._tables[table])

    def items(self, table: str) -> Iterator[tuple[Key, Any]]:
        rows = self._tables[table]
        for key in sorted(rows):
            yield key, rows[key]

    def count(self, table: str) -> int:
        return len(self._tables[table])

    # --- journal ------------------------------------------------------------------------

    def begin(self) -> None:
        """Start an all-or-nothing unit of writes (nests)."""
        self._journals.append([])

    def commit(self) -> None:
        """Keep the writes since the matching ``begin``."""
        entries = self._journals.pop()
        if self._journals:  # an outer unit can still undo them
            self._journals[-1].extend(entries)

    def rollback(self) -> None:
        """Undo every write since the matching ``begin``."""
        entries = self._journals.pop()
        for table, key, old, was_dirty in reversed(entries):
            rows = self._tables[table]
            if old is _MISSING:
                rows.pop(key, None)
            else:
                rows[key] = old
            if not was_dirty:
                self._dirty.discard((table, key))
            self._stale.add((table, key))  # the tree may hold the undone value

    @property
    def in_transaction(self) -> bool:
        return bool(self._journals)

    def dirty_keys(self) -> set[tuple[str, Key]]:
        """``(table, key)`` pairs written since the last ``clear_dirty`` (deleted ones too)."""
        return set(self._dirty)

    def clear_dirty(self) -> None:
        self._dirty.clear()
        self._encoded.clear()

    # --- snapshots ----------------------------------------------------------------------

    def to_json(self) -> dict[str, dict[str, Any]]:
        """The whole state as JSON (integer keys become decimal strings)."""
        return {
            table: {str(key): to_json_value(rows[key]) for key in sorted(rows)}
            for table, rows in self._tables.items()
        }

    @classmethod
    def from_json(cls, data: Any) -> LedgerState:
        """Inverse of ``to_json``; raises CorruptStateError on anything malformed.

        The tree is built here from the rows' JSON: a row that decodes is exactly the JSON of
        its record (``codec.from_json_value`` is strict), so this is the record's value hash
        without encoding every record again.
        """
        if not isinstance(data, dict) or set(data) != set(TABLES):
            raise CorruptStateError(f"a state snapshot has exactly the tables {sorted(TABLES)}")
        state = cls()
        leaves = []
        for table, (key_type, record_type) in TABLES.items():
            rows = data[table]
            if not isinstance(rows, dict):
                raise CorruptStateError(f"{table}: must be an object")
            for raw_key, raw in rows.items():
                key: Key = raw_key
                if key_type is int:
                    key = _height_key(table, raw_key)
                state._tables[table][key] = from_json_value(record_type, raw, f"{table}.{key}")
                leaves.append(make_leaf(table, str(key), raw))
        state._tree = build(sorted(leaves, key=lambda leaf: leaf.bits))
        return state

    def record_to_json(self, table: str, key: Key) -> Any | None:
        """One row as JSON (``None`` if absent): what a persistence layer stores per key.

        A row the tree re-hashed since ``clear_dirty`` is not encoded again: the chain writes
        back every changed row right after taking the block's root. Treat it as read-only.
        """
        record = self.get(table, key)
        if record is None:
            return None
        encoded = self._encoded.get((table, key))
        if encoded is not None and encoded[0] is record:
            return encoded[1]
        return to_json_value(record)

    def copy(self) -> LedgerState:
        """An independent state with the same contents (no journal, nothing dirty)."""
        other = LedgerState()
        other._tables = {name: rows.copy() for name, rows in self._tables.items()}
        with self._tree_lock:
            other._tree, other._stale = self._tree, set(self._stale)
        return other

    # --- the commitment (contracts_sim.state_tree) ---------------------------------------

    def state_root(self) -> Hash32:
        """The root of the sparse Merkle tree over every row (see the module docstring)."""
        return node_hash(self._updated_tree())

    def prove(self, table: str, key: Key) -> StateProof:
        """The proof that row ``(table, key)`` holds its record, or is absent, under
        ``state_root()`` (``state_tree.verify_proof`` checks it)."""
        return prove(self._updated_tree(), key_path(table, str(key)))

    def _updated_tree(self) -> Node:
        """The tree with every stale row re-hashed: O(stale rows · log rows)."""
        with self._tree_lock:
            if self._stale:
                self._tree = update(self._tree, self._stale_changes())
                self._stale = set()
            return self._tree

    def _stale_changes(self) -> list[Change]:
        changes: list[Change] = []
        for table, key in self._stale:
            record = self._tables[table].get(key)
            if record is None:
                changes.append((int.from_bytes(key_path(table, str(key)), "big"), None))
            else:
                encoded = to_json_value(record)
                self._encoded[(table, key)] = (record, encoded)
                leaf = make_leaf(table, str(key), encoded)
                changes.append((leaf.bits, leaf))
        changes.sort(key=lambda change: change[0])
        return changes

    # --- typed accessors ----------------------------------------------------------------

    def get_account(self, address: Address) -> Account:
        """The account at ``address`` (the empty account if it was never written)."""
        record = self._tables[ACCOUNTS].get(address)
        return Account() if record is None else record

    def set_account(self, address: Address, account: Account) -> None:
        if account == Account():
            self.delete(ACCOUNTS, address)
        else:
            self.put(ACCOUNTS, address, account)

    def accounts(self) -> Iterator[tuple[Address, Account]]:
        for key, record in self.items(ACCOUNTS):
            yield Address(str(key)), record

    def has_job(self, job_id: str) -> bool:
        return job_id in self._tables[JOBS]

    def get_job(self, job_id: str) -> Job:
        record = self._tables[JOBS].get(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        return record  # type: ignore[no-any-return]

    def set_job(self, job: Job) -> None:
        self.put(JOBS, job.job_id, job)

    def jobs(self) -> Iterator[Job]:
        for _, record in self.items(JOBS):
            yield record

    def get_dispute(self, dispute_id: str) -> Dispute:
        record = self._tables[DISPUTES].get(dispute_id)
        if record is None:
            raise DisputeNotFoundError(dispute_id)
        return record  # type: ignore[no-any-return]

    def set_dispute(self, dispute: Dispute) -> None:
        self.put(DISPUTES, dispute.dispute_id, dispute)

    def disputes(self) -> Iterator[Dispute]:
        for _, record in self.items(DISPUTES):
            yield record

    def get_supply(self) -> Supply:
        record = self._tables[SUPPLY].get(SUPPLY_KEY)
        return Supply() if record is None else record

    def set_supply(self, supply: Supply) -> None:
        self.put(SUPPLY, SUPPLY_KEY, supply)

    def get_block_hash(self, height: Height) -> Hash32 | None:
        """The hash of block ``height``, once a later block has begun (``None`` before) and
        while it is one of the last ``BLOCK_HASH_WINDOW`` (``None`` after)."""
        return self._tables[BLOCK_HASHES].get(height)  # type: ignore[no-any-return]

    def set_block_hash(self, height: Height, block_hash: Hash32) -> None:
        """Record the hash of block ``height`` and forget the one ``BLOCK_HASH_WINDOW`` below."""
        self.put(BLOCK_HASHES, height, block_hash)
        self.delete(BLOCK_HASHES, height - BLOCK_HASH_WINDOW)

    def get_beacon_output(self, height: Height) -> Hash32 | None:
        """The beacon output of block ``height`` (the randomness that seeds samples), once a
        later block has begun (``None`` before)."""
        return self._tables[BEACONS].get(height)  # type: ignore[no-any-return]

    def set_beacon_output(self, height: Height, output: Hash32) -> None:
        self.put(BEACONS, height, output)


# --- money mutators (each names one change) -----------------------------------------------


def increase_balance(state: LedgerState, address: Address, amount: int) -> None:
    if amount < 0:
        raise ValueError(f"increase_balance by a negative amount {amount}")
    account = state.get_account(address)
    state.set_account(address, account_with(account, balance=account.balance + amount))


def decrease_balance(state: LedgerState, address: Address, amount: int) -> None:
    """Take ``amount`` from the balance; raise InsufficientBalanceError if it is not there."""
    if amount < 0:
        raise ValueError(f"decrease_balance by a negative amount {amount}")
    account = state.get_account(address)
    if account.balance < amount:
        raise InsufficientBalanceError(address, amount, account.balance)
    state.set_account(address, account_with(account, balance=account.balance - amount))


_ACCOUNT_FIELDS: Final = (
    "balance",
    "nonce",
    "bonded",
    "locked",
    "unbonding",
    "jobs_completed",
    "jobs_slashed",
    "endpoint",
)
assert tuple(f.name for f in fields(Account)) == _ACCOUNT_FIELDS, "update account_with"


def account_with(
    account: Account, *, balance: int | None = None, nonce: int | None = None
) -> Account:
    """``replace(account, balance=…, nonce=…)`` for the two fields every transaction changes,
    built directly: ``dataclasses.replace`` costs about 7 µs, this 3 µs, and a transfer
    changes three accounts (its nonce, both balances). ``_ACCOUNT_FIELDS`` fails the import
    if ``Account`` gains a field this would drop."""
    return Account(
        balance=account.balance if balance is None else Amount(balance),
        nonce=account.nonce if nonce is None else nonce,
        bonded=account.bonded,
        locked=account.locked,
        unbonding=account.unbonding,
        jobs_completed=account.jobs_completed,
        jobs_slashed=account.jobs_slashed,
        endpoint=account.endpoint,
    )


def mint(state: LedgerState, address: Address, amount: int) -> None:
    """Create ``amount`` new tokens in ``address``'s balance (counted in Supply.minted)."""
    increase_balance(state, address, amount)
    supply = state.get_supply()
    state.set_supply(replace(supply, minted=Amount(supply.minted + amount)))


def burn(state: LedgerState, amount: int) -> None:
    """Record ``amount`` tokens, already removed from wherever they were held, as burned."""
    if amount < 0:
        raise ValueError(f"burn a negative amount {amount}")
    supply = state.get_supply()
    state.set_supply(replace(supply, burned=Amount(supply.burned + amount)))


_CANONICAL_HEIGHT = re.compile(r"0|[1-9][0-9]{0,19}")


def _height_key(table: str, raw_key: Any) -> int:
    """A stored height key: ASCII decimal as ``str(height)`` writes it, else
    CorruptStateError (``"05"`` beside ``"5"`` would be two rows at one tree path; ``isdigit``
    also takes ``"²"`` and ``"٥"``)."""
    if not isinstance(raw_key, str) or not _CANONICAL_HEIGHT.fullmatch(raw_key):
        raise CorruptStateError(f"{table}: key {raw_key!r} is not a height in decimal")
    return int(raw_key)

"""Blocks, receipts and chain events: what the block producer records.

    BlockHeader   height, parent_hash, time, tx_root, state_root, chain_id, beacon,
                  producer_signature
    Block         header + the transactions it applied, in order
    Receipt       what became of one transaction (pending, applied at (height, index), failed)
    ChainEvent    one ledger event with its chain-wide id, height and transaction

Hashes
    * ``tx_root`` = the RFC 9162 Merkle root (``protocol.merkle.root_of``) of the transactions'
      hashes in block order; ``SHA-256(b"")`` for an empty block.
    * ``block hash`` = SHA-256 of the canonical JSON of the header without its producer
      signature (``BlockHeader.unsigned_json``): the signature is over the hash. It is
      deterministic and unique for the key and hash (RSA PKCS#1 v1.5), so the hash still
      determines it.
    * ``state_root`` = ``LedgerState.state_root()`` after ``begin_block`` and every transaction
      of the block. The genesis block (height 0, parent hash 32 zero bytes, no transactions)
      carries the root of ``genesis_state``.
    * ``beacon`` = the producer's unique signature over the chain id and the height
      (``contracts_sim.beacon``): the block's randomness, which no transaction can change.
      ``check_beacon`` verifies it with the producer key fixed at genesis.
    * ``producer_signature`` = the same key's signature of the block hash
      (``contracts_sim.beacon``, ``sign_header``): what lets a client that pins the producer
      key trust a header it got from any node, and the state root in it
      (``check_producer_signature``; ``check_header`` checks both signatures).

A block holds only the transactions it applied; one that failed when the block was sealed is
not in it (it changed nothing) and gets a failed ``Receipt`` instead. ``from_json`` of each type
is the strict inverse of its ``to_json`` and raises ``MalformedBlockError`` on anything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from contracts_sim.beacon import BEACON_SIZE, BeaconKey, verify_beacon, verify_header_signature
from contracts_sim.exceptions import (
    InvalidBeaconError,
    InvalidHeaderSignatureError,
    MalformedBlockError,
)
from contracts_sim.transactions import Transaction
from protocol.errors import ProofNetError
from protocol.hashing import hash_json
from protocol.merkle import root_of
from protocol.types import HASH_SIZE, Hash32, Height

GENESIS_PARENT_HASH: Final = Hash32(bytes(HASH_SIZE))
"""The parent hash of the genesis block."""

ReceiptStatus = Literal["pending", "applied", "failed"]
RECEIPT_STATUSES: Final = ("pending", "applied", "failed")

BLOCK_EVENT: Final = "block"
"""The kind of the event the chain emits after each block (no transaction; data: height,
hash, time, txs). Agents long-polling ``/events`` wake on it: height is the clock."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX_BEACON = re.compile(f"[0-9a-f]{{{2 * BEACON_SIZE}}}")


# --- helpers ------------------------------------------------------------------------------


def compute_tx_root(transactions: Sequence[Transaction]) -> Hash32:
    """The RFC 9162 root of the transactions' hashes, in block order."""
    return root_of([tx.tx_hash for tx in transactions])


def _hash_from_hex(value: Any, what: str) -> Hash32:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise MalformedBlockError(f"{what} must be 64 lowercase hex digits")
    return Hash32(bytes.fromhex(value))


def _int(value: Any, what: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedBlockError(f"{what} must be a non-negative integer")
    return value


def _object(data: Any, keys: AbstractSet[str], what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping) or set(data) != keys:
        raise MalformedBlockError(f"{what} needs exactly the keys {sorted(keys)}")
    return data


# --- headers and blocks -------------------------------------------------------------------


@dataclass(frozen=True)
class BlockHeader:
    height: Height
    parent_hash: Hash32
    time: int  # unix seconds, informational; deadlines use heights
    tx_root: Hash32
    state_root: Hash32
    chain_id: str
    beacon: bytes  # the producer's signature over (chain_id, height); see contracts_sim.beacon
    producer_signature: bytes = b""  # the producer's signature of ``hash``; b"": not yet signed

    def unsigned_json(self) -> dict[str, Any]:
        """Every field but the producer signature: what the block hash is the hash of."""
        return {
            "height": self.height,
            "parent_hash": self.parent_hash.hex(),
            "time": self.time,
            "tx_root": self.tx_root.hex(),
            "state_root": self.state_root.hex(),
            "chain_id": self.chain_id,
            "beacon": self.beacon.hex(),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.unsigned_json(), "producer_signature": self.producer_signature.hex()}

    @property
    def hash(self) -> Hash32:
        """SHA-256 of the canonical JSON of the header without its producer signature."""
        return hash_json(self.unsigned_json())

    def signed(self, producer_key: BeaconKey) -> BlockHeader:
        """This header with ``producer_key``'s signature of its hash."""
        return replace(self, producer_signature=producer_key.sign_header(self.hash))

    @classmethod
    def from_json(cls, data: Any) -> BlockHeader:
        raw = _object(data, HEADER_KEYS, "header")
        chain_id = raw["chain_id"]
        if not isinstance(chain_id, str) or not chain_id:
            raise MalformedBlockError("header.chain_id must be a non-empty string")
        signatures = {}
        for name in ("beacon", "producer_signature"):
            value = raw[name]
            if not isinstance(value, str) or not _HEX_BEACON.fullmatch(value):
                raise MalformedBlockError(
                    f"header.{name} must be {2 * BEACON_SIZE} lowercase hex digits"
                )
            signatures[name] = bytes.fromhex(value)
        return cls(
            height=Height(_int(raw["height"], "header.height")),
            parent_hash=_hash_from_hex(raw["parent_hash"], "header.parent_hash"),
            time=_int(raw["time"], "header.time"),
            tx_root=_hash_from_hex(raw["tx_root"], "header.tx_root"),
            state_root=_hash_from_hex(raw["state_root"], "header.state_root"),
            chain_id=chain_id,
            beacon=signatures["beacon"],
            producer_signature=signatures["producer_signature"],
        )


HEADER_KEYS: Final = frozenset(
    {
        "height",
        "parent_hash",
        "time",
        "tx_root",
        "state_root",
        "chain_id",
        "beacon",
        "producer_signature",
    }
)


def check_beacon(header: BlockHeader, producer_key: bytes) -> None:
    """Raise InvalidBeaconError unless ``header.beacon`` is ``producer_key``'s signature for
    the header's chain id and height (the one value that height can have)."""
    if not verify_beacon(producer_key, header.chain_id, header.height, header.beacon):
        raise InvalidBeaconError(header.height)


def check_producer_signature(header: BlockHeader, producer_key: bytes) -> None:
    """Raise InvalidHeaderSignatureError unless ``header.producer_signature`` is
    ``producer_key``'s signature of the header's hash: the header, and its state root, are
    the producer's."""
    if not verify_header_signature(producer_key, header.hash, header.producer_signature):
        raise InvalidHeaderSignatureError(header.height)


def check_header(header: BlockHeader, producer_key: bytes) -> None:
    """Both of a header's signatures by ``producer_key``: its beacon (``check_beacon``) and
    the producer's signature of its hash (``check_producer_signature``)."""
    check_beacon(header, producer_key)
    check_producer_signature(header, producer_key)


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    transactions: tuple[Transaction, ...] = ()

    @property
    def hash(self) -> Hash32:
        return self.header.hash

    @property
    def height(self) -> Height:
        return self.header.height

    def tx_hashes(self) -> list[Hash32]:
        return [tx.tx_hash for tx in self.transactions]

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header.to_json(),
            "transactions": [tx.to_json() for tx in self.transactions],
        }

    @classmethod
    def from_json(cls, data: Any) -> Block:
        """Parse a block and check that its ``tx_root`` commits to its transactions."""
        raw = _object(data, {"header", "transactions"}, "block")
        header = BlockHeader.from_json(raw["header"])
        if not isinstance(raw["transactions"], list):
            raise MalformedBlockError("transactions must be a list")
        try:
            txs = tuple(Transaction.from_json(tx) for tx in raw["transactions"])
        except ProofNetError as exc:
            raise MalformedBlockError(f"transaction: {exc.message}") from exc
        block = cls(header, txs)
        check_tx_root(block)
        return block


def check_tx_root(block: Block) -> None:
    """Raise MalformedBlockError unless the header's ``tx_root`` matches the transactions."""
    if compute_tx_root(block.transactions) != block.header.tx_root:
        raise MalformedBlockError(f"block {block.height}: tx_root does not match its transactions")


# --- receipts and events --------------------------------------------------------------------


@dataclass(frozen=True)
class ChainEvent:
    """A ledger event as the chain recorded it. ``tx_hash`` is None for block events."""

    id: int
    height: Height
    tx_hash: str | None
    kind: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "height": self.height,
            "tx_hash": self.tx_hash,
            "kind": self.kind,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, data: Any) -> ChainEvent:
        raw = _object(data, {"id", "height", "tx_hash", "kind", "data"}, "event")
        tx_hash = raw["tx_hash"]
        if tx_hash is not None:
            _hash_from_hex(tx_hash, "event.tx_hash")
        if not isinstance(raw["kind"], str) or not isinstance(raw["data"], dict):
            raise MalformedBlockError("event.kind must be a string and event.data an object")
        return cls(
            id=_int(raw["id"], "event.id"),
            height=Height(_int(raw["height"], "event.height")),
            tx_hash=tx_hash,
            kind=raw["kind"],
            data=dict(raw["data"]),
        )


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Receipt:
    """What became of a transaction.

    * ``pending``: accepted into the open block; ``height`` is that block's height, ``index``
      and ``events`` are what sealing it will record (they are final unless the block has to be
      rebuilt, see ``Chain``).
    * ``applied``: in block ``height`` at position ``index``, with its events.
    * ``failed``: dropped when block ``height`` was sealed; ``error`` says why; nothing changed.
    """

    tx_hash: str
    status: ReceiptStatus
    height: Height | None = None
    index: int | None = None
    error: ErrorInfo | None = None
    events: tuple[ChainEvent, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "applied"

    def to_json(self) -> dict[str, Any]:
        return {
            "tx_hash": self.tx_hash,
            "status": self.status,
            "height": self.height,
            "index": self.index,
            "error": None if self.error is None else self.error.to_json(),
            "events": [e.to_json() for e in self.events],
        }

    @classmethod
    def from_json(cls, data: Any) -> Receipt:
        raw = _object(data, {"tx_hash", "status", "height", "index", "error", "events"}, "receipt")
        _hash_from_hex(raw["tx_hash"], "receipt.tx_hash")
        if raw["status"] not in RECEIPT_STATUSES:
            raise MalformedBlockError(f"receipt.status must be one of {list(RECEIPT_STATUSES)}")
        error = raw["error"]
        info = None
        if error is not None:
            err = _object(error, {"code", "message"}, "receipt.error")
            info = ErrorInfo(str(err["code"]), str(err["message"]))
        if not isinstance(raw["events"], list):
            raise MalformedBlockError("receipt.events must be a list")
        return cls(
            tx_hash=raw["tx_hash"],
            status=raw["status"],
            height=_int(raw["height"], "receipt.height", optional=True),
            index=_int(raw["index"], "receipt.index", optional=True),
            error=info,
            events=tuple(ChainEvent.from_json(e) for e in raw["events"]),
        )

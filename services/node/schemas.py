"""Pydantic schemas of the node's API (one family per resource).

Record schemas (``AccountRecord``, ``JobPublic``, ``DisputeRecord`` …) are derived from the
ledger's frozen dataclasses by ``record_model``, so the API can never drift from the records:
``bytes`` become hex strings, enums their values, tuples lists, nested records nested models.
Requests are strict (no coercion, unknown fields rejected).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, create_model
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from contracts_sim.records import Account, Dispute, Job
from services.node.tx_schemas import EVENTS_PAGE_EXAMPLE, RECEIPT_EXAMPLES, SIGNED_TRANSACTION

# --- derived record models ------------------------------------------------------------------

_MODELS: dict[type, type[BaseModel]] = {}


def _field_type(tp: Any) -> Any:
    supertype = getattr(tp, "__supertype__", None)
    if supertype is not None:
        return _field_type(supertype)
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [_field_type(a) for a in typing.get_args(tp) if a is not type(None)]
        (inner,) = args
        return inner | None
    if origin is tuple:
        return list[_field_type(typing.get_args(tp)[0])]  # type: ignore[misc]
    if origin is dict or tp is dict:
        return dict[str, Any]
    if tp is bytes:
        return str
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return record_model(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    return tp


def record_model(cls: type, name: str | None = None) -> type[BaseModel]:
    """A pydantic model with exactly the fields of the record dataclass ``cls``."""
    if name is None and cls in _MODELS:
        return _MODELS[cls]
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (_field_type(hints[f.name]), ...) for f in dataclasses.fields(cls)
    }
    model: type[BaseModel] = create_model(
        name or f"{cls.__name__}Record", __doc__=cls.__doc__, **fields
    )
    if name is None:
        _MODELS[cls] = model
    return model


AccountRecord = record_model(Account)
JobRecord = record_model(Job)
DisputeRecord = record_model(Dispute)


# --- errors ---------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(description="stable snake_case error code")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- transactions ---------------------------------------------------------------------------


class TxEnvelope(BaseModel):
    """A signed transaction (see docs/ledger.md): ``signature`` signs every other field.

    Validation stays this loose shape (``body`` any object) so that a bad body gets the
    ledger's typed error (``malformed_body`` naming the field); the OpenAPI shows instead the
    union of every kind's envelope (``services.node.tx_schemas``), told apart by ``kind``."""

    model_config = ConfigDict(strict=True, extra="forbid")

    chain_id: str
    sender: str = Field(description="0x + 40 lowercase hex digits")
    public_key: str = Field(description="Ed25519 public key, 64 lowercase hex digits")
    nonce: int
    kind: str
    body: dict[str, Any]
    signature: str = Field(description="Ed25519 signature, 128 lowercase hex digits")

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(SIGNED_TRANSACTION.core_schema)
        schema["title"] = "TxEnvelope"
        schema["description"] = (
            "A signed transaction: one schema per kind, chosen by `kind`. `signature` signs "
            "every other field (docs/ledger.md)."
        )
        return schema


class EventPublic(BaseModel):
    id: int
    height: int
    tx_hash: str | None
    kind: str
    data: dict[str, Any]


class ReceiptPublic(BaseModel):
    """What became of a transaction: ``pending`` (in the open block), ``applied`` (its
    block's height, its index there and its events) or ``failed`` (``error``)."""

    model_config = ConfigDict(json_schema_extra={"examples": RECEIPT_EXAMPLES})

    tx_hash: str
    status: Literal["pending", "applied", "failed"]
    height: int | None
    index: int | None
    error: ErrorBody | None
    events: list[EventPublic]


class TxBatch(BaseModel):
    """Signed transactions to judge in order (``POST /txs/batch``). Items are checked one by
    one by the ledger's own parser, so a malformed item is refused alone; the OpenAPI shows
    each as a ``TxEnvelope``."""

    txs: list[TxEnvelope] = Field(description="at most the node's max_batch_txs")


class TxBatchItem(BaseModel):
    """One item's fate: its hash (accepted into the open block, or a copy of a pending or
    applied transaction), or the error that refused it (it changed nothing)."""

    tx_hash: str | None = None
    error: ErrorBody | None = None


class TxBatchResult(BaseModel):
    """Per item, in the order sent."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 1,
                    "refused": 1,
                    "results": [
                        {"tx_hash": "3f" * 32},
                        {
                            "error": {
                                "code": "invalid_signature",
                                "message": "the signature does not verify",
                            }
                        },
                    ],
                }
            ]
        }
    )

    accepted: int
    refused: int
    results: list[TxBatchItem]


class JobSubmitted(BaseModel):
    job_id: str
    receipt: ReceiptPublic


# --- state ----------------------------------------------------------------------------------


class AccountPublic(AccountRecord):  # type: ignore[misc,valid-type]
    address: str
    total_stake: int
    next_nonce: int = Field(description="the nonce of the sender's next transaction")


class JobPublic(JobRecord):  # type: ignore[misc,valid-type]
    """A job record: status, spec, terms, bids, assignment, commitments, verdicts, disputes."""


class DisputeSummary(BaseModel):
    dispute_id: str
    challenger: str
    status: str
    phase: str
    turn: str
    deadline: int
    winner: str
    resolution: str = Field(description='what decided the closed dispute; "" while open')


class JobDetail(JobPublic):
    """A job's whole lifecycle: the record, its disputes in brief, every event about it."""

    dispute_summaries: list[DisputeSummary]
    history: list[EventPublic]


class DisputePublic(DisputeRecord):  # type: ignore[misc,valid-type]
    """A dispute: every move, its phase, whose turn it is and until which height."""

    turn_address: str | None = Field(description="the address that must move next")
    blocks_left: int | None = Field(description="blocks until the deadline passes")
    rounds: int


# --- chain ----------------------------------------------------------------------------------


class HeaderPublic(BaseModel):
    height: int
    parent_hash: str
    time: int
    tx_root: str
    state_root: str
    chain_id: str
    beacon: str = Field(
        description="the producer's RSA signature over (chain id, height), hex; its SHA-256 is "
        "the block's randomness (sample seeds); verify it with /params beacon_public_key"
    )
    producer_signature: str = Field(
        description="the producer's RSA signature of the block hash (the hash of the header "
        "without this field), hex: a client that pins the producer key trusts the header's "
        "state root through it (docs/state-commitment.md)"
    )


class BlockPublic(BaseModel):
    hash: str
    header: HeaderPublic
    tx_hashes: list[str]
    transactions: list[TxEnvelope] = Field(description="the signed transactions, in order")


class EventsPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EVENTS_PAGE_EXAMPLE]})

    events: list[EventPublic]
    last_id: int = Field(description="pass as ?since= to get the next page")
    height: int


class ParamsPublic(BaseModel):
    chain_id: str
    preset: str
    params: dict[str, Any]
    beacon_public_key: str = Field(
        description="DER of the block producer's RSA-2048 key, hex: every header's beacon "
        "verifies against it"
    )


class SamplePublic(BaseModel):
    job_id: str
    verifier: str
    seed_height: int
    seed: str
    segments: list[int]


class HealthPublic(BaseModel):
    status: Literal["ok"]
    chain_id: str
    height: int
    head_hash: str
    pending_txs: int
    last_event_id: int


class SupplyPublic(BaseModel):
    """balances + stakes + escrow + bonds + burned (held) == genesis + minted (issued)."""

    height: int
    genesis: int
    minted: int
    burned: int
    balances: int
    stakes: int
    escrow: int
    bonds: int
    held: int
    issued: int
    holds: bool
    error: str | None

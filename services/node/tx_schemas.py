"""The transaction envelope as the OpenAPI describes it: one schema per ``kind``.

The node checks a submitted envelope with ``schemas.TxEnvelope`` (strict; ``body`` a free
object) and its body with ``contracts_sim.transactions.parse_body``, whose typed errors
(``malformed_body`` naming the field, ``unknown_transaction_kind``) clients rely on. So these
models never validate a request: they only *describe* the wire format, as the discriminated
union ``SignedTransaction`` on ``kind`` that ``TxEnvelope``'s JSON schema points to. Every
body model carries an example that tests/services/node/test_node_openapi.py feeds to
``parse_body``, so the description cannot drift from the rules (docs/ledger.md has the rules
themselves).
"""

from __future__ import annotations

import functools
import hashlib
import operator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from contracts_sim.chain import DEFAULT_CHAIN_ID
from contracts_sim.crypto import key_from_seed
from contracts_sim.transactions import Transaction, sign_transaction
from protocol.models import (
    MAX_CHANNELS,
    MAX_CONTEXT,
    MAX_CONV_LAYERS,
    MAX_KERNEL,
    MAX_LAYERS,
    MAX_VOCAB,
    MAX_WIDTH,
)
from protocol.spec import MAX_BATCH, MAX_STEPS

# --- field types ----------------------------------------------------------------------------

HEX32_PATTERN = r"^(0x)?[0-9a-fA-F]{64}$"

Hash32 = Annotated[
    str, Field(pattern=HEX32_PATTERN, description="32 bytes as 64 hex digits (0x optional)")
]
Identifier = Annotated[
    str,
    Field(
        pattern=HEX32_PATTERN,
        description="a job or dispute id: 64 hex digits (0x optional, any case)",
    ),
]
AddressHex = Annotated[
    str, Field(pattern=r"^0x[0-9a-f]{40}$", description="0x + 40 lowercase hex digits")
]
# Integers are JSON integers below 2**63 (``MAX_AMOUNT``); the bound is said, not declared,
# since OpenAPI tools print 2**63 - 1 as a rounded float.
Amount = Annotated[int, Field(ge=0, description="token units, below 2^63")]
PositiveAmount = Annotated[int, Field(ge=1, description="token units, >= 1, below 2^63")]
Count = Annotated[int, Field(ge=1)]
Index = Annotated[int, Field(ge=0)]
Blob = Annotated[
    str,
    Field(
        pattern=r"^(0x)?([0-9a-fA-F]{2})*$",
        description="bytes as hex, two digits a byte (at most the chain's max_blob_bytes)",
    ),
]
ProofHash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits")]


def _example_hex(label: str) -> str:
    """A realistic-looking 32-byte value for the examples (SHA-256 of ``label``)."""
    return hashlib.sha256(label.encode()).hexdigest()


JOB_ID = _example_hex("example job")
DISPUTE_ID = _example_hex("example dispute")
PATH = [_example_hex("sibling 1"), _example_hex("sibling 2")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InclusionProofJson(_Strict):
    """RFC 9162 inclusion proof: the sibling hashes from leaf ``index`` up to the root."""

    index: Index
    size: Count
    path: list[ProofHash] = Field(max_length=128)


class ConsistencyProofJson(_Strict):
    """RFC 9162 consistency proof that the tree of ``old_size`` leaves is a prefix of the
    tree of ``new_size`` leaves."""

    old_size: Index
    new_size: Index
    path: list[ProofHash] = Field(max_length=128)


class DatasetRefJson(_Strict):
    id: str = Field(description="a shipped or generated dataset, e.g. digits")
    hash: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="its content hash, SHA-256")


Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Hidden = Annotated[list[Width], Field(max_length=MAX_LAYERS, description="layer widths")]
Classes = Annotated[int, Field(ge=2, le=MAX_WIDTH)]
Log2 = Annotated[int, Field(ge=-16, le=0, description="the rate is 2^lr_log2")]
Fraction = Annotated[
    float, Field(ge=0, lt=1, description="in [0, 1 - 2^-16]; used as round(x * 2^16) / 2^16")
]


class MlpModelJson(_Strict):
    """A multilayer perceptron on feature vectors."""

    family: Literal["mlp"]
    input_dim: Width
    hidden: Hidden = []
    classes: Classes


class ConvLayerJson(_Strict):
    channels: int = Field(ge=1, le=MAX_CHANNELS)
    kernel: int = Field(ge=1, le=MAX_KERNEL)
    stride: int = Field(default=1, ge=1, le=4)
    padding: int = Field(default=0, ge=0, description="below kernel")
    pool: int = Field(default=1, ge=1, le=4)
    pool_type: Literal["max", "avg"] = "max"


class CnnModelJson(_Strict):
    """A convolutional network on images, then a dense head."""

    family: Literal["cnn"]
    image: list[int] = Field(min_length=3, max_length=3, description="[channels, height, width]")
    conv: list[ConvLayerJson] = Field(min_length=1, max_length=MAX_CONV_LAYERS)
    hidden: Hidden = []
    classes: Classes


class TransformerModelJson(_Strict):
    """A decoder-only character transformer."""

    family: Literal["transformer"]
    vocab: int = Field(ge=2, le=MAX_VOCAB)
    context: int = Field(ge=2, le=MAX_CONTEXT, description="a power of two")
    d_model: int = Field(ge=2, le=MAX_WIDTH)
    heads: int = Field(ge=1, le=64, description="divides d_model")
    layers: int = Field(ge=1, le=MAX_LAYERS)
    ff: int | None = Field(
        default=None, ge=1, le=4 * MAX_WIDTH, description="4 x d_model if absent"
    )


class SgdJson(_Strict):
    name: Literal["sgd"]
    lr_log2: Log2
    momentum: Fraction = 0.0


class AdamWJson(_Strict):
    name: Literal["adamw"]
    lr_log2: Log2
    beta1: Fraction = 0.9
    beta2: Fraction = 0.999
    eps_log2: int = Field(default=-12, ge=-20, le=0)
    weight_decay_log2: int | None = Field(default=None, ge=-16, le=0)


class JobSpecJson(_Strict):
    """What to train, exactly (docs/protocol.md): the model, dataset, seed, steps, batch and
    optimizer fix every bit of the trajectory. ``name``, ``description`` and ``terms`` are
    accepted and ignored."""

    version: Literal[1]
    model: MlpModelJson | CnnModelJson | TransformerModelJson = Field(discriminator="family")
    dataset: DatasetRefJson
    seed: Index
    steps: int = Field(ge=1, le=MAX_STEPS)
    batch_size: int = Field(ge=1, le=MAX_BATCH, description="a power of two")
    optimizer: SgdJson | AdamWJson = Field(discriminator="name")
    checkpoint_interval: Count = Field(description="steps per leaf C; divides steps")
    name: str | None = None
    description: str | None = None
    terms: dict[str, Any] | None = None


EXAMPLE_SPEC: dict[str, Any] = {
    "version": 1,
    "model": {"family": "mlp", "input_dim": 64, "hidden": [64], "classes": 10},
    "dataset": {
        "id": "digits",
        "hash": "db5c3e7d8be89e5c11f50fccf960c8405369f4f31ae254985cd96e0d6a7c70e4",
    },
    "seed": 7,
    "steps": 600,
    "batch_size": 32,
    "optimizer": {"name": "sgd", "lr_log2": -3, "momentum": 0.875},
    "checkpoint_interval": 50,
}


def _body(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


# --- bodies: tokens and staking -------------------------------------------------------------


class FaucetBody(BaseModel):
    """Dev chains only: mint ``amount`` to the sender (balance capped at ``faucet_max``)."""

    model_config = _body({"amount": 1_000_000})
    amount: PositiveAmount


class TransferBody(BaseModel):
    """Move ``amount`` from the sender's balance to ``to``."""

    model_config = _body({"to": "0x" + "ab" * 20, "amount": 5})
    to: AddressHex
    amount: PositiveAmount


class StakeBody(BaseModel):
    """Balance to free stake (bonded)."""

    model_config = _body({"amount": 3_000_000})
    amount: PositiveAmount


class UnstakeBody(BaseModel):
    """Free stake to an unbonding entry, released after ``unbonding_delay`` blocks; stake
    reserved by the sender's bids on open jobs cannot leave."""

    model_config = _body({"amount": 1_000})
    amount: PositiveAmount


class WithdrawBody(BaseModel):
    """Every matured unbonding entry back to the balance. The body is empty."""

    model_config = _body({})


class SetEndpointBody(BaseModel):
    """Announce where the sender serves data (a solver's blobs); ``""`` withdraws it."""

    model_config = _body({"url": "http://127.0.0.1:8600"})
    url: str = Field(max_length=200, description="http(s)://host[:port][/path], or empty")


# --- bodies: jobs ---------------------------------------------------------------------------


class PostJobBody(BaseModel):
    """A job order: the spec and its terms; escrows ``payment + verification_fee``. The job id
    is ``sha256(canonical_json({spec_hash, submitter, nonce}))`` of the spec as posted; on a
    chain with forced errors the job record holds that spec with its seed mixed with the id
    (``protocol.forced_errors.job_seed``), and that is the spec a solver trains."""

    model_config = _body(
        {
            "spec": EXAMPLE_SPEC,
            "payment": 2_000_000,
            "verification_fee": 200_000,
            "min_stake": 3_000_000,
            "sample_count": 3,
            "bid_blocks": 8,
            "train_blocks": 2000,
        }
    )
    spec: JobSpecJson
    payment: Amount
    verification_fee: Amount
    min_stake: Amount = Field(description="free stake a bidder must hold (locked if it wins)")
    sample_count: Count = Field(description="segments each verifier re-executes")
    bid_blocks: Count = Field(description="bidding stays open this many blocks")
    train_blocks: Count = Field(description="blocks the winner has to commit the final root")


class BidBody(BaseModel):
    """Bid on an open job (replaces the sender's earlier bid)."""

    model_config = _body(
        {
            "job_id": JOB_ID,
            "price": 1_500_000,
            "capacity": 10,
            "trap_root": _example_hex("trap root"),
        }
    )
    job_id: Identifier
    price: Amount = Field(description="at most the job's payment")
    capacity: Count = Field(description="steps a block; capacity x train_blocks >= steps")
    trap_root: Hash32 | None = Field(
        default=None,
        description="Merkle root of the solver's forced-error secrets (required while the "
        "chain's forced_error_bps is on)",
    )


class CloseBiddingBody(BaseModel):
    """Anyone, after the bid deadline: assign the job to the best eligible bid."""

    model_config = _body({"job_id": JOB_ID})
    job_id: Identifier


class CancelJobBody(BaseModel):
    """The submitter cancels an open job that has no bids; the escrow is refunded."""

    model_config = _body({"job_id": JOB_ID})
    job_id: Identifier


class CommitProgressBody(BaseModel):
    """The solver commits the Merkle root of the trajectory so far; after the first commit
    a consistency proof from the previous root is required."""

    model_config = _body(
        {
            "job_id": JOB_ID,
            "size": 4,
            "root": _example_hex("root at 4"),
            "consistency_proof": {"old_size": 2, "new_size": 4, "path": PATH[:1]},
        }
    )
    job_id: Identifier
    size: Count = Field(description="leaves committed")
    root: Hash32
    consistency_proof: ConsistencyProofJson | None = None


class CommitFinalBody(BaseModel):
    """The solver's final commitment: every leaf, the final state's hash proved to be the
    last leaf, and leaf 0 proved to be the spec's initial state."""

    model_config = _body(
        {
            "job_id": JOB_ID,
            "root": _example_hex("final root"),
            "leaves": 13,
            "final_state_hash": _example_hex("final state"),
            "consistency_proof": None,
            "final_proof": {"index": 12, "size": 13, "path": PATH},
            "initial_proof": {"index": 0, "size": 13, "path": PATH},
        }
    )
    job_id: Identifier
    root: Hash32
    leaves: Count = Field(description="the spec's number of leaves")
    final_state_hash: Hash32
    consistency_proof: ConsistencyProofJson | None = None
    final_proof: InclusionProofJson
    initial_proof: InclusionProofJson


class AttestBody(BaseModel):
    """A verifier re-executed its sample and found it correct."""

    model_config = _body({"job_id": JOB_ID})
    job_id: Identifier


class SettleBody(BaseModel):
    """Anyone, after the challenge deadline with no open dispute: pay the solver and the
    attesters."""

    model_config = _body({"job_id": JOB_ID})
    job_id: Identifier


# --- bodies: disputes -----------------------------------------------------------------------


class ChallengeBody(BaseModel):
    """Open a dispute at the root of the solver's commitment (posts ``challenge_bond``); the
    solver and the challenger then descend the Merkle tree move by move."""

    model_config = _body({"job_id": JOB_ID})
    job_id: Identifier


class ChallengeFastPathBody(BaseModel):
    """Open a dispute on one segment directly: leaf ``segment`` agreed, leaf
    ``segment + 1`` disputed, both proved against the committed root."""

    model_config = _body(
        {
            "job_id": JOB_ID,
            "segment": 3,
            "pre_entry": _example_hex("leaf 3"),
            "post_entry": _example_hex("leaf 4"),
            "pre_proof": {"index": 3, "size": 13, "path": PATH},
            "post_proof": {"index": 4, "size": 13, "path": PATH},
        }
    )
    job_id: Identifier
    segment: Index
    pre_entry: Hash32
    post_entry: Hash32
    pre_proof: InclusionProofJson
    post_proof: InclusionProofJson


class DataRequestBody(BaseModel):
    """Not a claim of fraud: the sender could not get the blob of leaf ``segment`` (of its
    sample) and the solver must publish it (``publish_data``). No bond."""

    model_config = _body({"job_id": JOB_ID, "segment": 3, "withheld": True})
    job_id: Identifier
    segment: Index
    withheld: Literal[True]


class SealedChallengeBody(BaseModel):
    """On a job with forced errors, the only kind of challenge: a commitment
    ``sha256("proofnet/sealed-challenge/v1" || segment (u64) || salt || challenger)`` (posts
    ``challenge_bond``), opened by ``unseal`` after the window."""

    model_config = _body({"job_id": JOB_ID, "sealed": _example_hex("seal")})
    job_id: Identifier
    sealed: Hash32


class UnsealBody(BaseModel):
    """The challenger opens its sealed challenge after the window: the segment and salt of
    the seal, and both of the segment's leaves proved against the committed root."""

    model_config = _body(
        {
            "dispute_id": DISPUTE_ID,
            "segment": 3,
            "salt": _example_hex("salt"),
            "pre_entry": _example_hex("leaf 3"),
            "pre_proof": {"index": 3, "size": 13, "path": PATH},
            "post_entry": _example_hex("leaf 4"),
            "post_proof": {"index": 4, "size": 13, "path": PATH},
        }
    )
    dispute_id: Identifier
    segment: Index
    salt: Hash32
    pre_entry: Hash32
    pre_proof: InclusionProofJson
    post_entry: Hash32
    post_proof: InclusionProofJson


class UnsealEmptyBody(BaseModel):
    """The challenger opens an empty seal (segment = the job's segment count): every verdict
    of a job with forced errors seals one challenge per sampled segment, empty ones for the
    segments it does not dispute; the bond comes back."""

    model_config = _body({"dispute_id": DISPUTE_ID, "segment": 12, "salt": _example_hex("salt")})
    dispute_id: Identifier
    segment: Index
    salt: Hash32


class RevealChildrenBody(BaseModel):
    """The solver reveals the two children of the disputed node."""

    model_config = _body(
        {"dispute_id": DISPUTE_ID, "left": _example_hex("left"), "right": _example_hex("right")}
    )
    dispute_id: Identifier
    left: Hash32
    right: Hash32


class ChooseChildBody(BaseModel):
    """The challenger picks the child it disputes."""

    model_config = _body({"dispute_id": DISPUTE_ID, "side": "left"})
    dispute_id: Identifier
    side: Literal["left", "right"]


class RevealLeafBody(BaseModel):
    """The solver reveals the disputed leaf (and, past leaf 0, the agreed leaf before it
    with its inclusion proof): step bisection starts."""

    model_config = _body(
        {
            "dispute_id": DISPUTE_ID,
            "entry": _example_hex("leaf 4"),
            "pre_entry": _example_hex("leaf 3"),
            "pre_proof": {"index": 3, "size": 13, "path": PATH},
        }
    )
    dispute_id: Identifier
    entry: Hash32
    pre_entry: Hash32 | None = None
    pre_proof: InclusionProofJson | None = None


class PostMidpointBody(BaseModel):
    """The solver posts the state hash at the midpoint of the disputed step interval."""

    model_config = _body({"dispute_id": DISPUTE_ID, "state_hash": _example_hex("midpoint")})
    dispute_id: Identifier
    state_hash: Hash32


class RespondMidpointBody(BaseModel):
    """The challenger agrees (the interval's start moves up) or not (its end moves down)."""

    model_config = _body({"dispute_id": DISPUTE_ID, "agree": False})
    dispute_id: Identifier
    agree: bool


class PostPrestateBody(BaseModel):
    """The full state before the single disputed step; the chain re-executes that step and
    the loser is slashed (solver) or forfeits its bond (challenger)."""

    model_config = _body({"dispute_id": DISPUTE_ID, "blob": "00ff" * 8})
    dispute_id: Identifier
    blob: Blob


class PublishDataBody(BaseModel):
    """The solver answers a data request: the blob of the requested leaf and both leaves of
    its segment, proved against the committed root."""

    model_config = _body(
        {
            "dispute_id": DISPUTE_ID,
            "blob": "00ff" * 8,
            "pre_entry": _example_hex("leaf 3"),
            "pre_proof": {"index": 3, "size": 13, "path": PATH},
            "post_entry": _example_hex("leaf 4"),
            "post_proof": {"index": 4, "size": 13, "path": PATH},
        }
    )
    dispute_id: Identifier
    blob: Blob
    pre_entry: Hash32
    pre_proof: InclusionProofJson
    post_entry: Hash32
    post_proof: InclusionProofJson


class RevealTrapBody(BaseModel):
    """The solver shows that the step the referee disagreed with is one of its forced errors:
    the segment's secret, proved against the job's ``trap_root``, and the agreed pre-state
    blob again (the referee re-runs the step with the drawn perturbation)."""

    model_config = _body(
        {
            "dispute_id": DISPUTE_ID,
            "secret": _example_hex("trap secret"),
            "proof": {"index": 3, "size": 12, "path": PATH},
            "blob": "00ff" * 8,
        }
    )
    dispute_id: Identifier
    secret: Hash32
    proof: InclusionProofJson
    blob: Blob


class AuditBody(BaseModel):
    """The solver audits an attester whose sample held forced error ``segment``: the
    segment's secret (proved against ``trap_root``) and both of its leaves (proved against
    the root) open a game in which the attester must defend its attestation."""

    model_config = _body(
        {
            "job_id": JOB_ID,
            "attester": "0x" + "cd" * 20,
            "segment": 3,
            "secret": _example_hex("trap secret"),
            "secret_proof": {"index": 3, "size": 12, "path": PATH},
            "pre_entry": _example_hex("leaf 3"),
            "pre_proof": {"index": 3, "size": 13, "path": PATH},
            "post_entry": _example_hex("leaf 4"),
            "post_proof": {"index": 4, "size": 13, "path": PATH},
        }
    )
    job_id: Identifier
    attester: AddressHex
    segment: Index
    secret: Hash32
    secret_proof: InclusionProofJson
    pre_entry: Hash32
    pre_proof: InclusionProofJson
    post_entry: Hash32
    post_proof: InclusionProofJson


class ClaimJobTimeoutBody(BaseModel):
    """Anyone, after an assigned job's training deadline: the solver is slashed."""

    model_config = _body({"job_id": JOB_ID})
    job_id: Identifier


class ClaimDisputeTimeoutBody(BaseModel):
    """Anyone, after a dispute's move deadline: the party whose turn it was loses."""

    model_config = _body({"dispute_id": DISPUTE_ID})
    dispute_id: Identifier


# --- operator disputes (contracts_sim.operator_dispute) ------------------------------------

CHUNK_HEX = "2a00000000000000" * 4  # an example chunk: four int64 values of 42


class CommitTraceBody(BaseModel):
    """The solver commits the operator trace of the disputed step: its root, whether the step
    overflowed, the data roots of every pre- and post-state tensor (by name), and a proof
    tying each post tensor an operator writes to its leaf (null where none)."""

    model_config = _body(
        {
            "dispute_id": DISPUTE_ID,
            "trace_root": _example_hex("trace root"),
            "overflow": False,
            "pre": [_example_hex("pre 0"), _example_hex("pre 1")],
            "post": [_example_hex("post 0"), _example_hex("post 1")],
            "post_proofs": [None, {"index": 5, "size": 9, "path": PATH}],
        }
    )
    dispute_id: Identifier
    trace_root: Hash32
    overflow: Literal[False]
    pre: list[Hash32] = Field(max_length=256)
    post: list[Hash32] = Field(max_length=256)
    post_proofs: list[InclusionProofJson | None] = Field(max_length=256)


class CommitTraceOverflowBody(BaseModel):
    """The solver commits the trace of a step that overflowed: the post-state is the
    pre-state with the counter moved on, and one leaf of the trace is an overflow."""

    model_config = _body(
        {
            "dispute_id": DISPUTE_ID,
            "trace_root": _example_hex("trace root"),
            "overflow": True,
            "pre": [_example_hex("pre 0"), _example_hex("pre 1")],
            "post": [_example_hex("post 0"), _example_hex("pre 1")],
            "overflow_proof": {"index": 5, "size": 9, "path": PATH},
        }
    )
    dispute_id: Identifier
    trace_root: Hash32
    overflow: Literal[True]
    pre: list[Hash32] = Field(max_length=256)
    post: list[Hash32] = Field(max_length=256)
    overflow_proof: InclusionProofJson


class RevealOpBody(BaseModel):
    """The trace descent reached op k: the solver opens its entry (an overflow, or its
    output's data root)."""

    model_config = _body(
        {"dispute_id": DISPUTE_ID, "overflow": False, "data_root": _example_hex("op 5")}
    )
    dispute_id: Identifier
    overflow: Literal[False]
    data_root: Hash32


class RevealOpOverflowBody(BaseModel):
    """The trace descent reached op k and its entry is an overflow."""

    model_config = _body({"dispute_id": DISPUTE_ID, "overflow": True})
    dispute_id: Identifier
    overflow: Literal[True]


class ChunkPieceJson(_Strict):
    index: Index
    data: Blob = Field(description="the chunk's bytes (at most 4096)")
    path: list[Hash32] = Field(max_length=64)


class InputPieceJson(_Strict):
    data_root: Hash32 | None = None
    entry_proof: InclusionProofJson | None = None
    chunks: list[ChunkPieceJson]


class WitnessJson(_Strict):
    element: Index
    piece: InputPieceJson | None = None


class ShowOverflowBody(BaseModel):
    """Proof of an overflow: an overflowed leaf of the trace, or a check of op k with one
    witness element per input factor."""

    model_config = _body(
        {
            "dispute_id": DISPUTE_ID,
            "check": 0,
            "witnesses": [
                {"element": 3, "piece": {"chunks": [{"index": 0, "data": CHUNK_HEX, "path": []}]}}
            ],
        }
    )
    dispute_id: Identifier
    check: Index
    witnesses: list[WitnessJson] = Field(max_length=16)


class ShowOverflowLeafBody(BaseModel):
    """Proof of an overflow: an ``OVERFLOW_ENTRY`` leaf of the solver's trace (an input of
    op k, or any leaf while the solver claims its step does not overflow)."""

    model_config = _body({"dispute_id": DISPUTE_ID, "leaf": {"index": 5, "size": 9, "path": PATH}})
    dispute_id: Identifier
    leaf: InclusionProofJson


class RevealChunkBody(BaseModel):
    """The chunk descent reached chunk c of op k's output: the solver posts its bytes."""

    model_config = _body({"dispute_id": DISPUTE_ID, "data": CHUNK_HEX})
    dispute_id: Identifier
    data: Blob


class NameElementBody(BaseModel):
    """The challenger names the element of the revealed chunk it disagrees with."""

    model_config = _body({"dispute_id": DISPUTE_ID, "element": 3})
    dispute_id: Identifier
    element: Index


class PostPiecesBody(BaseModel):
    """The solver posts the proved chunks of each input the named element reads."""

    model_config = _body(
        {
            "dispute_id": DISPUTE_ID,
            "inputs": [
                {"chunks": [{"index": 0, "data": CHUNK_HEX, "path": []}]},
                None,
            ],
        }
    )
    dispute_id: Identifier
    inputs: list[InputPieceJson | None] = Field(max_length=16)


BODY_VARIANTS: dict[str, tuple[type[BaseModel], ...]] = {
    "faucet": (FaucetBody,),
    "transfer": (TransferBody,),
    "stake": (StakeBody,),
    "unstake": (UnstakeBody,),
    "withdraw": (WithdrawBody,),
    "set_endpoint": (SetEndpointBody,),
    "post_job": (PostJobBody,),
    "bid": (BidBody,),
    "close_bidding": (CloseBiddingBody,),
    "cancel_job": (CancelJobBody,),
    "commit_progress": (CommitProgressBody,),
    "commit_final": (CommitFinalBody,),
    "attest": (AttestBody,),
    "challenge": (ChallengeBody, ChallengeFastPathBody, DataRequestBody, SealedChallengeBody),
    "reveal_children": (RevealChildrenBody,),
    "choose_child": (ChooseChildBody,),
    "reveal_leaf": (RevealLeafBody,),
    "post_midpoint": (PostMidpointBody,),
    "respond_midpoint": (RespondMidpointBody,),
    "post_prestate": (PostPrestateBody,),
    "publish_data": (PublishDataBody,),
    "unseal": (UnsealBody, UnsealEmptyBody),
    "reveal_trap": (RevealTrapBody,),
    "audit": (AuditBody,),
    "claim_timeout": (ClaimJobTimeoutBody, ClaimDisputeTimeoutBody),
    "settle": (SettleBody,),
    "commit_trace": (CommitTraceBody, CommitTraceOverflowBody),
    "reveal_op": (RevealOpBody, RevealOpOverflowBody),
    "show_overflow": (ShowOverflowBody, ShowOverflowLeafBody),
    "reveal_chunk": (RevealChunkBody,),
    "name_element": (NameElementBody,),
    "post_pieces": (PostPiecesBody,),
}
"""Every transaction kind and the body shapes it takes (several: one of them)."""


# --- envelopes ------------------------------------------------------------------------------


class EnvelopeFields(BaseModel):
    """The fields of every signed transaction; each kind's model narrows ``kind`` and
    ``body``."""

    model_config = ConfigDict(extra="forbid")

    chain_id: str = Field(min_length=1, max_length=64, description="signed: replay-safe")
    sender: AddressHex = Field(description="the address of public_key")
    public_key: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Ed25519 public key, 64 lowercase hex digits"
    )
    nonce: Index = Field(description="the sender's next nonce (GET /accounts/{address})")
    kind: str = Field(description="the transaction kind: chooses the body's schema")
    body: Any = Field(description="the kind's body")
    signature: str = Field(
        pattern=r"^[0-9a-f]{128}$",
        description='Ed25519 over b"proofnet/tx/v1\\x00" + canonical JSON of the envelope '
        "without signature; 128 lowercase hex digits",
    )


def _camel(kind: str) -> str:
    return "".join(part.title() for part in kind.split("_"))


def _envelope_model(kind: str, variants: tuple[type[BaseModel], ...]) -> type[BaseModel]:
    body_type: Any = functools.reduce(operator.or_, variants)  # one shape, or a union
    kind_type: Any = Literal[kind]
    model: type[BaseModel] = create_model(
        f"{_camel(kind)}Tx",
        __base__=EnvelopeFields,
        __doc__=f"A signed ``{kind}`` transaction. {variants[0].__doc__ or ''}".strip(),
        kind=(kind_type, ...),
        body=(body_type, ...),
    )
    return model


ENVELOPES: dict[str, type[BaseModel]] = {
    kind: _envelope_model(kind, variants) for kind, variants in BODY_VARIANTS.items()
}
_ANY_ENVELOPE: Any = functools.reduce(operator.or_, ENVELOPES.values())
SIGNED_TRANSACTION: TypeAdapter[Any] = TypeAdapter(
    Annotated[_ANY_ENVELOPE, Field(discriminator="kind")]
)
"""The union of every kind's envelope, told apart by ``kind`` (what TxEnvelope documents)."""


# --- examples -------------------------------------------------------------------------------

EXAMPLE_KEY = key_from_seed("proofnet/openapi-example")


def signed_example(kind: str, body: dict[str, Any], nonce: int = 0) -> dict[str, Any]:
    """A validly signed envelope for the docs (a throwaway key; chain id of a default node)."""
    return sign_transaction(EXAMPLE_KEY, DEFAULT_CHAIN_ID, nonce, kind, body).to_json()


def _first_example(model: type[BaseModel]) -> dict[str, Any]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    examples = extra["examples"]
    assert isinstance(examples, list)
    example = examples[0]
    assert isinstance(example, dict)
    return example


def body_examples() -> list[tuple[str, dict[str, Any]]]:
    """``(kind, body)`` for every body shape: what the schema shows, and what tests parse."""
    return [
        (kind, _first_example(model))
        for kind, variants in BODY_VARIANTS.items()
        for model in variants
    ]


def openapi_examples(*kinds: str) -> dict[str, Any]:
    """Named, signed request examples for a submit route (Swagger UI's example menu)."""
    return {
        kind: {
            "summary": f"a signed {kind}",
            "value": signed_example(kind, _first_example(BODY_VARIANTS[kind][0])),
        }
        for kind in kinds
    }


# --- response examples ----------------------------------------------------------------------
# What a fresh dev node (default chain id) answers after the faucet example above, as
# tests/services/node/test_node_openapi.py checks against a real node.

FAUCET_EXAMPLE = signed_example("faucet", {"amount": 1_000_000})
FAUCET_HASH = Transaction.from_json(FAUCET_EXAMPLE).tx_hash.hex()
MINTED_EVENT: dict[str, Any] = {
    "id": 2,
    "height": 1,
    "tx_hash": FAUCET_HASH,
    "kind": "minted",
    "data": {"address": EXAMPLE_KEY.address, "amount": 1_000_000},
}
RECEIPT_EXAMPLES: list[Any] = [
    {
        "tx_hash": FAUCET_HASH,
        "status": "applied",
        "height": 1,
        "index": 0,
        "error": None,
        "events": [MINTED_EVENT],
    },
    {
        "tx_hash": FAUCET_HASH,
        "status": "pending",
        "height": 1,
        "index": 0,
        "error": None,
        "events": [],
    },
]
BLOCK_EVENT: dict[str, Any] = {
    "id": 3,
    "height": 1,
    "tx_hash": None,
    "kind": "block",
    "data": {"height": 1, "hash": _example_hex("block 1"), "time": 1_796_181_127, "txs": 1},
}
EVENTS_PAGE_EXAMPLE: dict[str, Any] = {
    "events": [MINTED_EVENT, BLOCK_EVENT],
    "last_id": 3,
    "height": 1,
}

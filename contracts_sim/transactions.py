"""Transactions: the signed envelope and one typed body per kind.

Envelope (JSON, as sent to a node)::

    {"chain_id": str, "sender": "0x…40 hex", "public_key": 64 hex, "nonce": int,
     "kind": str, "body": {...}, "signature": 128 hex}

* ``signing_bytes`` = ``b"proofnet/tx/v1\\x00" + canonical_json(envelope without signature)``.
  The chain id is inside, so a transaction signed for one chain is invalid on every other.
* ``tx_hash`` = SHA-256 of the canonical JSON of the whole envelope (signature included).
* ``Transaction.from_json`` checks only the envelope's shape (``MalformedTransactionError``);
  ``parse_body(kind, body)`` turns a body into its typed ``*Body`` dataclass or raises
  ``UnknownTransactionKindError`` / ``MalformedBodyError(field, reason)``. Signature, chain id
  and nonce are checked against the state by ``fork.apply_transaction``.

Body conventions: integers are JSON integers (never booleans, never floats) and non-negative;
amounts are below 2**63; hashes are 32 bytes as 64 hex digits (``0x`` optional, any case); ids
(``job_id``, ``dispute_id``) are 64 hex digits and normalised to lowercase; blobs are hex;
Merkle proofs use ``protocol.merkle``'s JSON form; optional fields may be absent or null;
unknown fields are rejected. ``TX_KINDS`` maps every kind to its body class.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Final, overload

from contracts_sim.crypto import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    PrivateKey,
    is_address,
    remember_verified,
    verify_signature,
)
from contracts_sim.exceptions import (
    InvalidSpecError,
    MalformedBodyError,
    MalformedTransactionError,
    TransactionTooLargeError,
    UnknownTransactionKindError,
)
from protocol.errors import ProofNetError, SpecError
from protocol.hashing import canonical_json, sha256
from protocol.merkle import ConsistencyProof, InclusionProof
from protocol.spec import JobSpec, parse_spec
from protocol.state_commitment import CHUNK_BYTES
from protocol.types import HASH_SIZE, Address, Amount, Hash32

TX_DOMAIN: Final = b"proofnet/tx/v1\x00"
MAX_AMOUNT: Final = 2**63 - 1
MAX_CHAIN_ID_LENGTH: Final = 64
MAX_KIND_LENGTH: Final = 64
_LOWER_HEX = re.compile(r"[0-9a-f]*")
_ENVELOPE_KEYS: Final = {"chain_id", "sender", "public_key", "nonce", "kind", "body", "signature"}


# --- the envelope ---------------------------------------------------------------------------


def _read_only(*_args: Any, **_kwargs: Any) -> Any:
    raise TypeError("a transaction's body is read-only: it is what the sender signed")


class FrozenObject(dict[str, Any]):
    """A JSON object that refuses every change: a transaction caches the bytes it was signed
    and hashed over, so its body must not change under them. A ``dict`` still (JSON encoders,
    ``isinstance`` checks and readers see one); pickled as a plain dict rebuilt frozen."""

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenObject, (dict(self),))


class FrozenArray(list[Any]):
    """A JSON array that refuses every change (see ``FrozenObject``)."""

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = clear = extend = insert = pop = remove = reverse = sort = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenArray, (list(self),))


def _frozen(value: Any) -> Any:
    """``value`` (decoded JSON) with every object and array frozen, all the way down."""
    if isinstance(value, dict):
        return FrozenObject({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return FrozenArray([_frozen(item) for item in value])
    return value


def _normalise_body(body: Any) -> dict[str, Any]:
    """A private, JSON-normal, frozen copy of ``body`` (lists not tuples; rejects NaN and
    non-JSON)."""
    if not isinstance(body, Mapping):
        raise MalformedTransactionError("body must be a JSON object")
    try:
        normal = json.loads(canonical_json(dict(body)))
    except (TypeError, ValueError) as exc:
        raise MalformedTransactionError(f"body is not canonical JSON: {exc}") from exc
    assert isinstance(normal, dict)
    frozen: FrozenObject = _frozen(normal)
    return frozen


def _strict_hex(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or not _LOWER_HEX.fullmatch(value):
        raise MalformedTransactionError(f"{what} must be {2 * size} lowercase hex digits")
    return bytes.fromhex(value)


@dataclass(frozen=True)
class Transaction:
    chain_id: str
    sender: Address
    public_key: bytes
    nonce: int
    kind: str
    body: dict[str, Any]
    signature: bytes

    def unsigned_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "sender": self.sender,
            "public_key": self.public_key.hex(),
            "nonce": self.nonce,
            "kind": self.kind,
            "body": self.body,
        }

    def signing_bytes(self) -> bytes:
        """What the sender signed: the domain tag and the unsigned envelope's canonical JSON
        (serialized once: every rebuild of a block checks it again)."""
        return TX_DOMAIN + self._unsigned_canonical

    @functools.cached_property
    def _unsigned_canonical(self) -> bytes:
        """``canonical_json(unsigned_json())``: the one serialization both the signing bytes
        and the hash are cut from."""
        return canonical_json(self.unsigned_json())

    def to_json(self) -> dict[str, Any]:
        return {**self.unsigned_json(), "signature": self.signature.hex()}

    def envelope_bytes(self) -> bytes:
        """``canonical_json(to_json())``, the whole envelope, without serializing it again:
        canonical JSON sorts keys and ``"signature"`` sorts after every other envelope key, so
        the whole envelope's encoding is the unsigned one with ``,"signature":"<hex>"`` before
        its final brace (``tests/contracts_sim/test_ledger_ingest.py`` checks the identity)."""
        unsigned = self._unsigned_canonical
        return unsigned[:-1] + b',"signature":"' + self.signature.hex().encode() + b'"}'

    @functools.cached_property
    def tx_hash(self) -> Hash32:
        """SHA-256 of the canonical JSON of the whole transaction (cached: it is immutable)."""
        return sha256(self.envelope_bytes())

    @classmethod
    def from_json(cls, data: Any) -> Transaction:
        """Parse an envelope; raise MalformedTransactionError on any malformed input."""
        if not isinstance(data, Mapping):
            raise MalformedTransactionError("a transaction must be a JSON object")
        if set(data) != _ENVELOPE_KEYS:
            raise MalformedTransactionError(f"needs exactly the keys {sorted(_ENVELOPE_KEYS)}")
        chain_id, sender, nonce, kind = (
            data["chain_id"],
            data["sender"],
            data["nonce"],
            data["kind"],
        )
        if not isinstance(chain_id, str) or not 0 < len(chain_id) <= MAX_CHAIN_ID_LENGTH:
            raise MalformedTransactionError("chain_id must be a non-empty string (<= 64 chars)")
        if not is_address(sender):
            raise MalformedTransactionError("sender must be 0x and 40 lowercase hex digits")
        if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce <= MAX_AMOUNT:
            raise MalformedTransactionError("nonce must be a non-negative integer")
        if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KIND_LENGTH:
            raise MalformedTransactionError("kind must be a non-empty string (<= 64 chars)")
        return cls(
            chain_id=chain_id,
            sender=Address(sender),
            public_key=_strict_hex(data["public_key"], PUBLIC_KEY_SIZE, "public_key"),
            nonce=nonce,
            kind=kind,
            body=_normalise_body(data["body"]),
            signature=_strict_hex(data["signature"], SIGNATURE_SIZE, "signature"),
        )


def signing_bytes(unsigned: Mapping[str, Any]) -> bytes:
    """The bytes a sender signs: domain tag + canonical JSON of the unsigned envelope."""
    return TX_DOMAIN + canonical_json(dict(unsigned))


@overload
def sign_transaction(
    key: PrivateKey, chain_id: str, nonce: int, body: TxBody, /
) -> Transaction: ...


@overload
def sign_transaction(
    key: PrivateKey, chain_id: str, nonce: int, kind: str, body: Mapping[str, Any], /
) -> Transaction: ...


def sign_transaction(
    key: PrivateKey,
    chain_id: str,
    nonce: int,
    kind: str | TxBody,
    body: Mapping[str, Any] | None = None,
    /,
) -> Transaction:
    """Build and sign a transaction from ``key``'s account: from a typed body
    (``sign_transaction(key, chain_id, nonce, BidBody(...))``, the kind is the body's), or
    from a kind and a JSON body (for bodies a test deliberately malforms)."""
    if isinstance(kind, TxBody):
        if body is not None:
            raise TypeError("a typed body carries its kind: pass no JSON body with it")
        typed = kind
        kind, body = typed.kind, typed.to_json()
    elif body is None:
        raise TypeError(f"a {kind!r} transaction needs a body")
    unsigned = Transaction(
        chain_id=chain_id,
        sender=key.address,
        public_key=key.public_key,
        nonce=nonce,
        kind=kind,
        body=_normalise_body(body),
        signature=b"",
    )
    signature = key.sign(unsigned.signing_bytes())
    return replace(unsigned, signature=signature)


# --- body field readers ---------------------------------------------------------------------


class BodyReader:
    """Reads typed fields out of a body; ``finish()`` rejects fields nobody asked for."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self._body = body
        self._seen: set[str] = set()

    def _raw(self, name: str, optional: bool) -> Any:
        self._seen.add(name)
        value = self._body.get(name)
        if value is None and not optional:
            raise MalformedBodyError(name, "is required")
        return value

    def present(self, name: str) -> bool:
        """Whether ``name`` is given (not absent, not null)."""
        return self._body.get(name) is not None

    def absent(self, name: str) -> None:
        """Accept ``name`` only absent or null."""
        if self._raw(name, optional=True) is not None:
            raise MalformedBodyError(name, "must be absent or null here")

    def integer(self, name: str, *, lo: int = 0, hi: int = MAX_AMOUNT) -> int:
        value = self._raw(name, optional=False)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedBodyError(name, f"must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise MalformedBodyError(name, f"must be between {lo} and {hi}, got {value}")
        return value

    def amount(self, name: str, *, positive: bool = False) -> Amount:
        return Amount(self.integer(name, lo=1 if positive else 0))

    def hash32(self, name: str) -> Hash32:
        value = self._raw(name, optional=False)
        return Hash32(self._hex(name, value, HASH_SIZE))

    def optional_hash32(self, name: str) -> Hash32 | None:
        if not self.present(name):
            self.absent(name)
            return None
        return self.hash32(name)

    def identifier(self, name: str) -> str:
        """A job or dispute id: 64 hex digits, returned lowercase without ``0x``."""
        return self.hash32(name).hex()

    def blob(self, name: str, max_bytes: int) -> bytes:
        value = self._raw(name, optional=False)
        data = self._hex(name, value, None)
        if len(data) > max_bytes:
            raise MalformedBodyError(name, f"is {len(data)} bytes; at most {max_bytes} allowed")
        return data

    def address(self, name: str) -> Address:
        value = self._raw(name, optional=False)
        if not is_address(value):
            raise MalformedBodyError(name, "must be 0x and 40 lowercase hex digits")
        return Address(value)

    def url(self, name: str, max_length: int) -> str:
        """A URL string of at most ``max_length`` characters ("" clears); its grammar is the
        registry's rule (``contracts_sim.registry.check_endpoint_url``)."""
        value = self._raw(name, optional=False)
        if not isinstance(value, str):
            raise MalformedBodyError(name, f"must be a string, got {value!r}")
        if len(value) > max_length:
            raise MalformedBodyError(name, f"is {len(value)} characters; at most {max_length}")
        return value

    def flag(self, name: str) -> bool:
        value = self._raw(name, optional=False)
        if not isinstance(value, bool):
            raise MalformedBodyError(name, f"must be true or false, got {value!r}")
        return value

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        value = self._raw(name, optional=False)
        if value not in options:
            raise MalformedBodyError(name, f"must be one of {list(options)}, got {value!r}")
        return str(value)

    def spec(self, name: str) -> JobSpec:
        value = self._raw(name, optional=False)
        try:
            return parse_spec(value)
        except SpecError as exc:
            raise InvalidSpecError(f"{name}.{exc.field}", exc.reason) from exc

    def inclusion_proof(self, name: str) -> InclusionProof | None:
        value = self._raw(name, optional=True)
        if value is None:
            return None
        try:
            return InclusionProof.from_json(value)
        except ProofNetError as exc:
            raise MalformedBodyError(name, exc.message) from exc

    def required_inclusion_proof(self, name: str) -> InclusionProof:
        proof = self.inclusion_proof(name)
        if proof is None:
            raise MalformedBodyError(name, "is required")
        return proof

    def consistency_proof(self, name: str) -> ConsistencyProof | None:
        value = self._raw(name, optional=True)
        if value is None:
            return None
        try:
            return ConsistencyProof.from_json(value)
        except ProofNetError as exc:
            raise MalformedBodyError(name, exc.message) from exc

    def items(self, name: str, max_items: int) -> list[Any]:
        """A JSON list of at most ``max_items`` elements (each read by the caller)."""
        value = self._raw(name, optional=False)
        if not isinstance(value, list) or len(value) > max_items:
            raise MalformedBodyError(name, f"must be a list of at most {max_items} items")
        return value

    def value(self, name: str) -> Any:
        """An optional field as given (None if absent); the caller reads it."""
        return self._raw(name, optional=True)

    def record(self, name: str, value: Any) -> BodyReader:
        """A reader of ``value``, an object nested in this body (``name`` says where)."""
        if not isinstance(value, Mapping):
            raise MalformedBodyError(name, "must be an object")
        return BodyReader(value)

    def finish(self) -> None:
        unknown = sorted(set(self._body) - self._seen)
        if unknown:
            raise MalformedBodyError(unknown[0], "unknown field")

    @staticmethod
    def _hex(name: str, value: Any, size: int | None) -> bytes:
        if not isinstance(value, str):
            raise MalformedBodyError(name, "must be a hex string")
        raw = value[2:] if value.startswith("0x") else value
        if len(raw) % 2 or not _LOWER_HEX.fullmatch(raw.lower()):
            raise MalformedBodyError(name, "must be a hex string")
        data = bytes.fromhex(raw)
        if size is not None and len(data) != size:
            raise MalformedBodyError(name, f"must be {size} bytes ({2 * size} hex digits)")
        return data


# --- bodies, one per kind -------------------------------------------------------------------


def encode_field(value: Any) -> Any:
    """A body field in the JSON form its reader takes: bytes as lowercase hex, proofs and
    specs as their JSON, tuples as lists, nested pieces by their own ``to_json``."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, InclusionProof | ConsistencyProof | ChunkPiece | InputPiece | Witness):
        return value.to_json()
    if isinstance(value, JobSpec):
        return value.to_dict()
    if isinstance(value, tuple):
        return [encode_field(v) for v in value]
    return value


class TxBody:
    """A typed transaction body: ``kind`` names its transaction kind, ``read`` parses the JSON
    a node receives (through ``parse_body``) and ``to_json`` is its inverse:
    ``parse_body(body.kind, body.to_json()) == body``. Construct one directly and sign it with
    ``sign_transaction(key, chain_id, nonce, body)``.

    The default ``to_json`` writes every field under its own name and leaves out fields that
    are None (every optional field may be absent); bodies whose JSON is shaped otherwise
    override it."""

    kind: ClassVar[str]

    @classmethod
    def read(cls, r: BodyReader) -> TxBody:
        """Parse a body of this kind (each body class defines it)."""
        raise NotImplementedError(f"{cls.__name__} defines no reader")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = encode_field(value)
        return out


@dataclass(frozen=True)
class FaucetBody(TxBody):
    kind: ClassVar[str] = "faucet"
    amount: Amount

    @classmethod
    def read(cls, r: BodyReader) -> FaucetBody:
        return cls(r.amount("amount", positive=True))


@dataclass(frozen=True)
class TransferBody(TxBody):
    kind: ClassVar[str] = "transfer"
    to: Address
    amount: Amount

    @classmethod
    def read(cls, r: BodyReader) -> TransferBody:
        return cls(r.address("to"), r.amount("amount", positive=True))


@dataclass(frozen=True)
class StakeBody(TxBody):
    kind: ClassVar[str] = "stake"
    amount: Amount

    @classmethod
    def read(cls, r: BodyReader) -> StakeBody:
        return cls(r.amount("amount", positive=True))


@dataclass(frozen=True)
class UnstakeBody(TxBody):
    kind: ClassVar[str] = "unstake"
    amount: Amount

    @classmethod
    def read(cls, r: BodyReader) -> UnstakeBody:
        return cls(r.amount("amount", positive=True))


@dataclass(frozen=True)
class WithdrawBody(TxBody):
    kind: ClassVar[str] = "withdraw"

    @classmethod
    def read(cls, r: BodyReader) -> WithdrawBody:
        return cls()


@dataclass(frozen=True)
class SetEndpointBody(TxBody):
    """Announce where this account serves data (a solver's blobs); "" withdraws it."""

    kind: ClassVar[str] = "set_endpoint"
    url: str
    MAX_URL_LENGTH: ClassVar[int] = 200

    @classmethod
    def read(cls, r: BodyReader) -> SetEndpointBody:
        return cls(r.url("url", cls.MAX_URL_LENGTH))


@dataclass(frozen=True)
class PostJobBody(TxBody):
    kind: ClassVar[str] = "post_job"
    spec: JobSpec
    payment: Amount
    verification_fee: Amount
    min_stake: Amount
    sample_count: int
    bid_blocks: int
    train_blocks: int

    @classmethod
    def read(cls, r: BodyReader) -> PostJobBody:
        return cls(
            spec=r.spec("spec"),
            payment=r.amount("payment"),
            verification_fee=r.amount("verification_fee"),
            min_stake=r.amount("min_stake"),
            sample_count=r.integer("sample_count", lo=1),
            bid_blocks=r.integer("bid_blocks", lo=1),
            train_blocks=r.integer("train_blocks", lo=1),
        )


@dataclass(frozen=True)
class BidBody(TxBody):
    """A solver's offer; ``trap_root`` commits to its forced-error secrets (required while
    ``Params.forced_error_bps`` is on; ``protocol.forced_errors``)."""

    kind: ClassVar[str] = "bid"
    job_id: str
    price: Amount
    capacity: int
    trap_root: Hash32 | None = None

    @classmethod
    def read(cls, r: BodyReader) -> BidBody:
        return cls(
            r.identifier("job_id"),
            r.amount("price"),
            r.integer("capacity", lo=1),
            r.optional_hash32("trap_root"),
        )


@dataclass(frozen=True)
class CloseBiddingBody(TxBody):
    kind: ClassVar[str] = "close_bidding"
    job_id: str

    @classmethod
    def read(cls, r: BodyReader) -> CloseBiddingBody:
        return cls(r.identifier("job_id"))


@dataclass(frozen=True)
class CancelJobBody(TxBody):
    kind: ClassVar[str] = "cancel_job"
    job_id: str

    @classmethod
    def read(cls, r: BodyReader) -> CancelJobBody:
        return cls(r.identifier("job_id"))


@dataclass(frozen=True)
class CommitProgressBody(TxBody):
    kind: ClassVar[str] = "commit_progress"
    job_id: str
    size: int
    root: Hash32
    consistency_proof: ConsistencyProof | None

    @classmethod
    def read(cls, r: BodyReader) -> CommitProgressBody:
        return cls(
            r.identifier("job_id"),
            r.integer("size", lo=1),
            r.hash32("root"),
            r.consistency_proof("consistency_proof"),
        )


@dataclass(frozen=True)
class CommitFinalBody(TxBody):
    kind: ClassVar[str] = "commit_final"
    job_id: str
    root: Hash32
    leaves: int
    final_state_hash: Hash32
    consistency_proof: ConsistencyProof | None
    final_proof: InclusionProof  # required: binds final_state_hash to the last leaf
    initial_proof: InclusionProof  # required: binds leaf 0 to the spec's initial state

    @classmethod
    def read(cls, r: BodyReader) -> CommitFinalBody:
        return cls(
            r.identifier("job_id"),
            r.hash32("root"),
            r.integer("leaves", lo=1),
            r.hash32("final_state_hash"),
            r.consistency_proof("consistency_proof"),
            r.required_inclusion_proof("final_proof"),
            r.required_inclusion_proof("initial_proof"),
        )


@dataclass(frozen=True)
class AttestBody(TxBody):
    kind: ClassVar[str] = "attest"
    job_id: str

    @classmethod
    def read(cls, r: BodyReader) -> AttestBody:
        return cls(r.identifier("job_id"))


@dataclass(frozen=True)
class SegmentEvidence:
    """The challenge fast path: leaf ``segment`` agreed, leaf ``segment + 1`` disputed."""

    segment: int
    pre_entry: Hash32
    post_entry: Hash32
    pre_proof: InclusionProof
    post_proof: InclusionProof

    def to_json(self) -> dict[str, Any]:
        """The fields a fast-path challenge (or an unseal) carries, flat in its body."""
        return {
            "segment": self.segment,
            "pre_entry": self.pre_entry.hex(),
            "post_entry": self.post_entry.hex(),
            "pre_proof": self.pre_proof.to_json(),
            "post_proof": self.post_proof.to_json(),
        }


@dataclass(frozen=True)
class ChallengeBody(TxBody):
    """A dispute (``evidence`` None: Merkle descent from the root; else the fast path), or,
    with ``withheld: true``, a data request for the blob of leaf ``data_segment``."""

    kind: ClassVar[str] = "challenge"
    job_id: str
    evidence: SegmentEvidence | None
    data_segment: int | None = None
    """A data request, not a claim of fraud: the requester could not get the blob of this
    leaf (a segment of its sample) and the solver must publish it (``publish_data``)."""
    sealed: Hash32 | None = None
    """On a job with forced errors, the only kind of fraud claim: a commitment to the segment
    (``protocol.forced_errors.seal``), opened by ``unseal`` after the window."""

    FAST_PATH_FIELDS: ClassVar[tuple[str, ...]] = (
        "segment",
        "pre_entry",
        "post_entry",
        "pre_proof",
        "post_proof",
    )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"job_id": self.job_id}
        if self.sealed is not None:
            return {**body, "sealed": self.sealed.hex()}
        if self.data_segment is not None:
            return {**body, "segment": self.data_segment, "withheld": True}
        if self.evidence is not None:
            return {**body, **self.evidence.to_json()}
        return body

    @classmethod
    def read(cls, r: BodyReader) -> ChallengeBody:
        job_id = r.identifier("job_id")
        if r.present("sealed"):
            for name in ("withheld", *cls.FAST_PATH_FIELDS):
                r.absent(name)  # a sealed challenge names nothing until it is opened
            return cls(job_id, None, sealed=r.hash32("sealed"))
        if r.present("withheld") and r.flag("withheld"):
            for name in cls.FAST_PATH_FIELDS[1:]:
                r.absent(name)  # a data request names only the segment it lacks
            return cls(job_id, None, r.integer("segment"))
        given = [name for name in cls.FAST_PATH_FIELDS if r.present(name)]
        if not given:
            for name in cls.FAST_PATH_FIELDS:
                r.absent(name)  # the plain challenge: starts the Merkle descent
            return cls(job_id, None)
        missing = [name for name in cls.FAST_PATH_FIELDS if name not in given]
        if missing:
            raise MalformedBodyError(missing[0], "is required when any fast-path field is given")
        pre_proof = r.inclusion_proof("pre_proof")
        post_proof = r.inclusion_proof("post_proof")
        assert pre_proof is not None and post_proof is not None
        evidence = SegmentEvidence(
            segment=r.integer("segment"),
            pre_entry=r.hash32("pre_entry"),
            post_entry=r.hash32("post_entry"),
            pre_proof=pre_proof,
            post_proof=post_proof,
        )
        return cls(job_id, evidence)


@dataclass(frozen=True)
class RevealChildrenBody(TxBody):
    kind: ClassVar[str] = "reveal_children"
    dispute_id: str
    left: Hash32
    right: Hash32

    @classmethod
    def read(cls, r: BodyReader) -> RevealChildrenBody:
        return cls(r.identifier("dispute_id"), r.hash32("left"), r.hash32("right"))


@dataclass(frozen=True)
class ChooseChildBody(TxBody):
    kind: ClassVar[str] = "choose_child"
    dispute_id: str
    side: str  # "left" or "right"

    @classmethod
    def read(cls, r: BodyReader) -> ChooseChildBody:
        return cls(r.identifier("dispute_id"), r.choice("side", ("left", "right")))


@dataclass(frozen=True)
class RevealLeafBody(TxBody):
    kind: ClassVar[str] = "reveal_leaf"
    dispute_id: str
    entry: Hash32
    pre_entry: Hash32 | None
    pre_proof: InclusionProof | None

    @classmethod
    def read(cls, r: BodyReader) -> RevealLeafBody:
        return cls(
            r.identifier("dispute_id"),
            r.hash32("entry"),
            r.optional_hash32("pre_entry"),
            r.inclusion_proof("pre_proof"),
        )


@dataclass(frozen=True)
class PostMidpointBody(TxBody):
    kind: ClassVar[str] = "post_midpoint"
    dispute_id: str
    state_hash: Hash32

    @classmethod
    def read(cls, r: BodyReader) -> PostMidpointBody:
        return cls(r.identifier("dispute_id"), r.hash32("state_hash"))


@dataclass(frozen=True)
class RespondMidpointBody(TxBody):
    kind: ClassVar[str] = "respond_midpoint"
    dispute_id: str
    agree: bool

    @classmethod
    def read(cls, r: BodyReader) -> RespondMidpointBody:
        return cls(r.identifier("dispute_id"), r.flag("agree"))


@dataclass(frozen=True)
class PostPrestateBody(TxBody):
    kind: ClassVar[str] = "post_prestate"
    dispute_id: str
    blob: bytes

    MAX_BLOB_BYTES: ClassVar[int] = 1 << 30  # the chain's own limit is Params.max_blob_bytes

    @classmethod
    def read(cls, r: BodyReader) -> PostPrestateBody:
        return cls(r.identifier("dispute_id"), r.blob("blob", cls.MAX_BLOB_BYTES))


@dataclass(frozen=True)
class PublishDataBody(TxBody):
    """The solver's answer to a data request: the blob of the requested leaf and both leaves
    of its segment, proved against the committed root, so that the requester can re-execute
    the segment (and challenge it on the fast path) from what is on chain."""

    kind: ClassVar[str] = "publish_data"
    dispute_id: str
    blob: bytes
    pre_entry: Hash32
    pre_proof: InclusionProof
    post_entry: Hash32
    post_proof: InclusionProof

    @classmethod
    def read(cls, r: BodyReader) -> PublishDataBody:
        return cls(
            r.identifier("dispute_id"),
            r.blob("blob", PostPrestateBody.MAX_BLOB_BYTES),
            r.hash32("pre_entry"),
            r.required_inclusion_proof("pre_proof"),
            r.hash32("post_entry"),
            r.required_inclusion_proof("post_proof"),
        )


@dataclass(frozen=True)
class UnsealBody(TxBody):
    """The challenger opens a sealed challenge after the window: the segment and salt of its
    seal and, unless the seal is empty (segment = the job's segment count: it disputes
    nothing), both of the segment's leaves proved against the root (the fast path's evidence)."""

    kind: ClassVar[str] = "unseal"
    dispute_id: str
    segment: int
    salt: Hash32
    evidence: SegmentEvidence | None

    EVIDENCE_FIELDS: ClassVar[tuple[str, ...]] = (
        "pre_entry",
        "pre_proof",
        "post_entry",
        "post_proof",
    )

    def to_json(self) -> dict[str, Any]:
        body = {"dispute_id": self.dispute_id, "segment": self.segment, "salt": self.salt.hex()}
        if self.evidence is None:
            return body  # an empty seal
        return {**self.evidence.to_json(), **body}

    @classmethod
    def read(cls, r: BodyReader) -> UnsealBody:
        dispute_id, segment, salt = (
            r.identifier("dispute_id"),
            r.integer("segment"),
            r.hash32("salt"),
        )
        if not any(r.present(name) for name in cls.EVIDENCE_FIELDS):
            return cls(dispute_id, segment, salt, None)  # an empty seal
        pre_entry, pre_proof = r.hash32("pre_entry"), r.required_inclusion_proof("pre_proof")
        post_entry, post_proof = r.hash32("post_entry"), r.required_inclusion_proof("post_proof")
        evidence = SegmentEvidence(segment, pre_entry, post_entry, pre_proof, post_proof)
        return cls(dispute_id, segment, salt, evidence)


@dataclass(frozen=True)
class RevealTrapBody(TxBody):
    """The solver shows that the step the referee disagreed with is one of its forced errors:
    the segment's secret, proved against the job's ``trap_root``, and the agreed pre-state
    blob again (the referee re-runs the step and applies the drawn perturbation)."""

    kind: ClassVar[str] = "reveal_trap"
    dispute_id: str
    secret: Hash32
    proof: InclusionProof
    blob: bytes

    @classmethod
    def read(cls, r: BodyReader) -> RevealTrapBody:
        return cls(
            r.identifier("dispute_id"),
            r.hash32("secret"),
            r.required_inclusion_proof("proof"),
            r.blob("blob", PostPrestateBody.MAX_BLOB_BYTES),
        )


@dataclass(frozen=True)
class AuditBody(TxBody):
    """The solver audits an attester whose sample held forced error ``segment``: the segment's
    secret (proved against ``trap_root``) and both of its leaves (proved against the root)
    open a bisection game in which the attester must defend its attestation."""

    kind: ClassVar[str] = "audit"
    job_id: str
    attester: Address
    segment: int
    secret: Hash32
    secret_proof: InclusionProof
    pre_entry: Hash32
    pre_proof: InclusionProof
    post_entry: Hash32
    post_proof: InclusionProof

    @classmethod
    def read(cls, r: BodyReader) -> AuditBody:
        return cls(
            r.identifier("job_id"),
            r.address("attester"),
            r.integer("segment"),
            r.hash32("secret"),
            r.required_inclusion_proof("secret_proof"),
            r.hash32("pre_entry"),
            r.required_inclusion_proof("pre_proof"),
            r.hash32("post_entry"),
            r.required_inclusion_proof("post_proof"),
        )


# --- operator disputes (contracts_sim.operator_dispute) ------------------------------------

MAX_TRACE_TENSORS: Final = 256
"""Most tensors a state may have in a ``commit_trace`` (its pre and post data roots)."""
MAX_PIECE_INPUTS: Final = 16
"""Most inputs an operator reads (the widest reads 4)."""
MAX_PIECE_CHUNKS: Final = 1 << 16
"""Most chunks one input's piece may list; the bytes are bounded by ``Params.max_blob_bytes``."""
MAX_CHUNK_PATH: Final = 64


def _hash_list(r: BodyReader, name: str, max_items: int) -> tuple[Hash32, ...]:
    return tuple(
        Hash32(BodyReader._hex(f"{name}[{i}]", v, HASH_SIZE))
        for i, v in enumerate(r.items(name, max_items))
    )


def _optional_proofs(r: BodyReader, name: str, max_items: int) -> tuple[InclusionProof | None, ...]:
    proofs: list[InclusionProof | None] = []
    for i, value in enumerate(r.items(name, max_items)):
        if value is None:
            proofs.append(None)
            continue
        try:
            proofs.append(InclusionProof.from_json(value))
        except ProofNetError as exc:
            raise MalformedBodyError(f"{name}[{i}]", exc.message) from exc
    return tuple(proofs)


@dataclass(frozen=True)
class CommitTraceBody(TxBody):
    """The solver commits the operator trace of the one disputed step a: its root, whether
    the step overflowed, and the data roots of every tensor of the agreed pre-state and the
    disputed post-state (the state tree's order, by name), with the proofs that tie each
    post tensor to the trace (``post_proofs``, null for a tensor the step keeps or for the
    counter) or, for an overflow, the proof of an ``OVERFLOW_ENTRY`` leaf."""

    kind: ClassVar[str] = "commit_trace"
    dispute_id: str
    trace_root: Hash32
    overflow: bool
    pre: tuple[Hash32, ...]
    post: tuple[Hash32, ...]
    post_proofs: tuple[InclusionProof | None, ...]
    overflow_proof: InclusionProof | None

    def to_json(self) -> dict[str, Any]:
        body = {
            "dispute_id": self.dispute_id,
            "trace_root": self.trace_root.hex(),
            "overflow": self.overflow,
            "pre": encode_field(self.pre),
            "post": encode_field(self.post),
        }
        if self.overflow:
            assert self.overflow_proof is not None, "an overflow needs its overflow_proof"
            return {**body, "overflow_proof": self.overflow_proof.to_json()}
        return {**body, "post_proofs": encode_field(self.post_proofs)}

    @classmethod
    def read(cls, r: BodyReader) -> CommitTraceBody:
        dispute_id, root, overflow = (
            r.identifier("dispute_id"),
            r.hash32("trace_root"),
            r.flag("overflow"),
        )
        pre = _hash_list(r, "pre", MAX_TRACE_TENSORS)
        post = _hash_list(r, "post", MAX_TRACE_TENSORS)
        if overflow:
            r.absent("post_proofs")
            return cls(
                dispute_id, root, True, pre, post, (), r.required_inclusion_proof("overflow_proof")
            )
        r.absent("overflow_proof")
        proofs = _optional_proofs(r, "post_proofs", MAX_TRACE_TENSORS)
        return cls(dispute_id, root, False, pre, post, proofs, None)


@dataclass(frozen=True)
class RevealOpBody(TxBody):
    """The trace descent ended at op k: the solver opens its entry, an overflow or the
    output's data root (the entry is then ``protocol.trace.output_entry(k, shape, root)``)."""

    kind: ClassVar[str] = "reveal_op"
    dispute_id: str
    overflow: bool
    data_root: Hash32 | None

    @classmethod
    def read(cls, r: BodyReader) -> RevealOpBody:
        dispute_id, overflow = r.identifier("dispute_id"), r.flag("overflow")
        if overflow:
            r.absent("data_root")
            return cls(dispute_id, True, None)
        return cls(dispute_id, False, r.hash32("data_root"))


@dataclass(frozen=True)
class ChunkPiece:
    """Chunk ``index`` of a tensor and its path in the tensor's chunk tree."""

    index: int
    data: bytes
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "data": self.data.hex(), "path": encode_field(self.path)}

    @classmethod
    def read(cls, r: BodyReader) -> ChunkPiece:
        index = r.integer("index")
        data = r.blob("data", CHUNK_BYTES)
        path = _hash_list(r, "path", MAX_CHUNK_PATH)
        r.finish()
        return cls(index, data, path)


@dataclass(frozen=True)
class InputPiece:
    """Chunks of one input of op k, proved: for an earlier operator's output, its data root
    and the proof of its entry in the trace (``entry_proof``); for a pre-state tensor,
    neither (its data root was committed with the trace)."""

    data_root: Hash32 | None
    entry_proof: InclusionProof | None
    chunks: tuple[ChunkPiece, ...]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"chunks": encode_field(self.chunks)}
        if self.data_root is not None:
            body["data_root"] = self.data_root.hex()
        if self.entry_proof is not None:
            body["entry_proof"] = self.entry_proof.to_json()
        return body

    @classmethod
    def read(cls, r: BodyReader, name: str) -> InputPiece:
        root, proof = r.optional_hash32("data_root"), r.inclusion_proof("entry_proof")
        chunks = tuple(
            ChunkPiece.read(r.record(f"{name}.chunks[{i}]", value))
            for i, value in enumerate(r.items("chunks", MAX_PIECE_CHUNKS))
        )
        r.finish()
        return cls(root, proof, chunks)


def _optional_piece(r: BodyReader, name: str, value: Any) -> InputPiece | None:
    return None if value is None else InputPiece.read(r.record(name, value), name)


@dataclass(frozen=True)
class Witness:
    """One element of an input of op k (flat ``element`` index) with the chunk holding it
    (``piece``, one chunk; null for a batch input, which the referee computes)."""

    element: int
    piece: InputPiece | None

    def to_json(self) -> dict[str, Any]:
        return {"element": self.element, "piece": encode_field(self.piece)}


@dataclass(frozen=True)
class ShowOverflowBody(TxBody):
    """Evidence that op k (or, during the trace descent, the solver's step) overflows:
    ``leaf``, the proof of an ``OVERFLOW_ENTRY`` leaf of the trace (an input of op k, or any
    leaf while the solver claims no overflow), or ``check`` (an index into op k's checks,
    ``protocol.exact.trace.registry.op_checks``) with one witness per input factor."""

    kind: ClassVar[str] = "show_overflow"
    dispute_id: str
    leaf: InclusionProof | None
    check: int | None
    witnesses: tuple[Witness, ...]

    def to_json(self) -> dict[str, Any]:
        if self.leaf is not None:
            return {"dispute_id": self.dispute_id, "leaf": self.leaf.to_json()}
        return {
            "dispute_id": self.dispute_id,
            "check": self.check,
            "witnesses": [w.to_json() for w in self.witnesses],
        }

    @classmethod
    def read(cls, r: BodyReader) -> ShowOverflowBody:
        dispute_id = r.identifier("dispute_id")
        if r.present("leaf"):
            r.absent("check")
            r.absent("witnesses")
            return cls(dispute_id, r.required_inclusion_proof("leaf"), None, ())
        r.absent("leaf")
        check = r.integer("check", hi=MAX_PIECE_INPUTS)
        witnesses = []
        for i, value in enumerate(r.items("witnesses", MAX_PIECE_INPUTS)):
            name = f"witnesses[{i}]"
            w = r.record(name, value)
            element = w.integer("element")
            piece = _optional_piece(w, f"{name}.piece", w.value("piece"))
            w.finish()
            witnesses.append(Witness(element, piece))
        return cls(dispute_id, None, check, tuple(witnesses))


@dataclass(frozen=True)
class RevealChunkBody(TxBody):
    """The chunk descent ended at chunk c of op k's output: the solver posts its bytes."""

    kind: ClassVar[str] = "reveal_chunk"
    dispute_id: str
    data: bytes

    @classmethod
    def read(cls, r: BodyReader) -> RevealChunkBody:
        return cls(r.identifier("dispute_id"), r.blob("data", CHUNK_BYTES))


@dataclass(frozen=True)
class NameElementBody(TxBody):
    """The challenger names the element of the revealed chunk it disagrees with (its flat
    index in op k's output)."""

    kind: ClassVar[str] = "name_element"
    dispute_id: str
    element: int

    @classmethod
    def read(cls, r: BodyReader) -> NameElementBody:
        return cls(r.identifier("dispute_id"), r.integer("element"))


@dataclass(frozen=True)
class PostPiecesBody(TxBody):
    """The solver posts, for each input of op k, the chunks covering the box the named
    element reads, proved (null for an input it does not read or a batch input)."""

    kind: ClassVar[str] = "post_pieces"
    dispute_id: str
    inputs: tuple[InputPiece | None, ...]

    @classmethod
    def read(cls, r: BodyReader) -> PostPiecesBody:
        dispute_id = r.identifier("dispute_id")
        values = r.items("inputs", MAX_PIECE_INPUTS)
        pieces = tuple(_optional_piece(r, f"inputs[{i}]", v) for i, v in enumerate(values))
        return cls(dispute_id, pieces)


@dataclass(frozen=True)
class ClaimTimeoutBody(TxBody):
    """Exactly one of ``job_id`` (missed training deadline) or ``dispute_id`` (missed move)."""

    kind: ClassVar[str] = "claim_timeout"
    job_id: str | None
    dispute_id: str | None

    @classmethod
    def read(cls, r: BodyReader) -> ClaimTimeoutBody:
        has_job, has_dispute = r.present("job_id"), r.present("dispute_id")
        if has_job == has_dispute:
            raise MalformedBodyError("job_id", "give exactly one of job_id or dispute_id")
        if has_job:
            r.absent("dispute_id")
            return cls(r.identifier("job_id"), None)
        r.absent("job_id")
        return cls(None, r.identifier("dispute_id"))


@dataclass(frozen=True)
class SettleBody(TxBody):
    kind: ClassVar[str] = "settle"
    job_id: str

    @classmethod
    def read(cls, r: BodyReader) -> SettleBody:
        return cls(r.identifier("job_id"))


TX_KINDS: Final[dict[str, type[TxBody]]] = {
    cls.kind: cls
    for cls in (
        FaucetBody,
        TransferBody,
        StakeBody,
        UnstakeBody,
        WithdrawBody,
        SetEndpointBody,
        PostJobBody,
        BidBody,
        CloseBiddingBody,
        CancelJobBody,
        CommitProgressBody,
        CommitFinalBody,
        AttestBody,
        ChallengeBody,
        RevealChildrenBody,
        ChooseChildBody,
        RevealLeafBody,
        PostMidpointBody,
        RespondMidpointBody,
        PostPrestateBody,
        PublishDataBody,
        UnsealBody,
        RevealTrapBody,
        AuditBody,
        ClaimTimeoutBody,
        SettleBody,
        CommitTraceBody,
        RevealOpBody,
        ShowOverflowBody,
        RevealChunkBody,
        NameElementBody,
        PostPiecesBody,
    )
}
"""Every transaction kind and its body class."""


def parse_body(kind: str, body: Mapping[str, Any]) -> Any:
    """The typed body of a ``kind`` transaction; raises MalformedBodyError naming the field."""
    body_type = TX_KINDS.get(kind)
    if body_type is None:
        raise UnknownTransactionKindError(kind)
    reader = BodyReader(body)
    parsed = body_type.read(reader)
    reader.finish()
    return parsed


# --- admission ------------------------------------------------------------------------------

MAX_SMALL_TRANSACTION_BYTES: Final = 64 << 10
"""The largest encoded transaction of every kind but ``post_prestate``: ids, hashes, log-size
Merkle proofs and a job spec fit many times over."""


def max_transaction_bytes(kind: str, max_blob_bytes: int) -> int:
    """The largest encoded ``kind`` transaction a node admits: a pre-state carries a blob of up
    to ``max_blob_bytes`` (``Params``) as hex, two characters a byte; every other kind is
    small."""
    if kind in (PostPrestateBody.kind, PublishDataBody.kind, RevealTrapBody.kind):
        return 2 * max_blob_bytes + MAX_SMALL_TRANSACTION_BYTES
    if kind == PostPiecesBody.kind:  # chunks of up to max_blob_bytes, each with its path
        return 4 * max_blob_bytes + MAX_SMALL_TRANSACTION_BYTES
    return MAX_SMALL_TRANSACTION_BYTES


MAX_SCANNED_STRINGS: Final = 1024
"""Strings (and escaped quotes) ``envelope_kind`` looks at besides one per
``SCANNED_BYTES_PER_STRING`` bytes: a ``post_prestate`` has a few dozen, a ``post_pieces`` a
few dozen per chunk of 8 KiB of hex."""
SCANNED_BYTES_PER_STRING: Final = 256
_JSON_SPACE = re.compile(rb"[ \t\r\n]*")


def envelope_kind(encoded: bytes) -> str | None:
    """The ``kind`` of an encoded envelope, read without decoding it (admission of a large body
    before it is parsed): the value of the last top-level ``"kind"`` key, as ``json.loads``
    keeps the last of repeated keys; None if there is none, if it is not a plain string, or if
    the body holds more than ``MAX_SCANNED_STRINGS`` strings and one per
    ``SCANNED_BYTES_PER_STRING`` bytes (a Python step each). Strings are skipped with
    ``bytes.find`` and nesting is counted with ``bytes.count`` between them, so a blob of
    hundreds of megabytes costs a memchr, not a Python loop. A key spelt with escapes is not
    seen: the check after parsing still applies the kind's limit to such a body."""
    depth, position, kind = 0, 0, None
    budget = [MAX_SCANNED_STRINGS + len(encoded) // SCANNED_BYTES_PER_STRING]
    while budget[0] > 0:
        start = encoded.find(b'"', position)
        if start < 0:
            return kind
        depth += sum(encoded.count(c, position, start) for c in (b"{", b"[")) - sum(
            encoded.count(c, position, start) for c in (b"}", b"]")
        )
        end = _string_end(encoded, start, budget)
        if end < 0:
            return None
        position = end + 1
        after = _JSON_SPACE.match(encoded, position)
        colon = after.end() if after else position
        if depth != 1 or encoded[start + 1 : end] != b"kind" or encoded[colon : colon + 1] != b":":
            continue
        value = _JSON_SPACE.match(encoded, colon + 1)
        value_start = value.end() if value else colon + 1
        if encoded[value_start : value_start + 1] != b'"':
            kind = None  # not a string: no valid transaction
            continue
        value_end = _string_end(encoded, value_start, budget)
        if value_end < 0 or value_end - value_start > 6 * MAX_KIND_LENGTH + 2:
            return None
        decoded = json.loads(encoded[value_start : value_end + 1])
        kind = decoded if isinstance(decoded, str) else None
        position = value_end + 1
    return None


def _string_end(encoded: bytes, start: int, budget: list[int]) -> int:
    """The index of the quote that closes the JSON string opened at ``start`` (-1: none, or
    the budget of looks is spent); a quote preceded by an odd run of backslashes is escaped."""
    look = start
    while budget[0] > 0:
        budget[0] -= 1
        look = encoded.find(b'"', look + 1)
        if look < 0:
            return -1
        backslashes = look - 1
        while backslashes > start and encoded[backslashes] == 0x5C:
            backslashes -= 1
        if (look - 1 - backslashes) % 2 == 0:
            return look
    return -1


def check_encoded_size(encoded: bytes, max_blob_bytes: int) -> None:
    """Admission before parsing: raise ``TransactionTooLargeError`` if the encoded envelope is
    larger than its kind allows. Every kind allows ``MAX_SMALL_TRANSACTION_BYTES``; past that
    the kind is read with ``envelope_kind`` (a body that names none plainly is held to the
    small limit)."""
    if len(encoded) <= MAX_SMALL_TRANSACTION_BYTES:
        return
    kind = envelope_kind(encoded)
    check_transaction_size(kind or "(unnamed)", len(encoded), max_blob_bytes)


def max_request_bytes(max_blob_bytes: int) -> int:
    """The largest request body a node reads at all: that of the largest kind."""
    return max(max_transaction_bytes(kind, max_blob_bytes) for kind in TX_KINDS)


def check_transaction_size(kind: str, size: int, max_blob_bytes: int) -> None:
    """Admission, right after the kind is known and before anything is hashed or verified:
    raise ``TransactionTooLargeError`` if ``size`` bytes is more than any valid ``kind``
    transaction needs."""
    limit = max_transaction_bytes(kind, max_blob_bytes)
    if size > limit:
        raise TransactionTooLargeError(kind, size, limit)


# --- checks before sequencing ---------------------------------------------------------------


@dataclass(frozen=True)
class CheckedEnvelope:
    """What can be known of a submission without any state, found before it is sequenced
    (often in a worker process): the parsed transaction, None if the envelope is malformed
    (parse it again where the typed error is wanted: errors do not cross processes), and
    whether its signature verifies (``verify_signature``, the rules' own check)."""

    tx: Transaction | None
    signature_valid: bool

    def remember(self) -> None:
        """Record a worker's valid signature here, so the rules' check under the chain's lock
        is a lookup (``contracts_sim.crypto.remember_verified``)."""
        if self.tx is not None and self.signature_valid:
            tx = self.tx
            remember_verified(tx.public_key, tx.signing_bytes(), tx.signature)


def check_envelope(data: Any) -> CheckedEnvelope:
    """Parse ``data`` and verify its signature; the hash is computed too, so that a worker
    process hands back a transaction with nothing left to serialize."""
    try:
        tx = data if isinstance(data, Transaction) else Transaction.from_json(data)
    except ProofNetError:
        return CheckedEnvelope(None, False)
    _ = tx.tx_hash
    return CheckedEnvelope(tx, verify_signature(tx.public_key, tx.signing_bytes(), tx.signature))


def check_envelopes(items: Sequence[Any]) -> list[CheckedEnvelope]:
    """``check_envelope`` of each item: the function a verifying worker runs."""
    return [check_envelope(item) for item in items]

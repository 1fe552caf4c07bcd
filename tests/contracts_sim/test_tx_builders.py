"""Typed body builders: every ``*Body`` encodes itself (``to_json``) into exactly the JSON its
reader parses back, and ``sign_transaction`` signs a typed body as it would the dict."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts_sim.crypto import generate_key
from contracts_sim.transactions import (
    MAX_PIECE_INPUTS,
    TX_KINDS,
    ChallengeBody,
    ChunkPiece,
    ClaimTimeoutBody,
    CommitTraceBody,
    InputPiece,
    RevealOpBody,
    SegmentEvidence,
    SetEndpointBody,
    ShowOverflowBody,
    TxBody,
    UnsealBody,
    Witness,
    parse_body,
    sign_transaction,
)
from protocol.merkle import ConsistencyProof, InclusionProof
from protocol.spec import JobSpec
from protocol.state_commitment import CHUNK_BYTES
from protocol.types import Address, Amount, Hash32
from tests.ledger_helpers import tiny_spec

hashes = st.binary(min_size=32, max_size=32).map(Hash32)
ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
amounts = st.integers(1, 2**63 - 1).map(Amount)
counts = st.integers(1, 2**20)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: Address("0x" + b.hex()))
paths = st.lists(st.binary(min_size=32, max_size=32), max_size=4).map(tuple)
inclusion_proofs = st.builds(
    lambda size, frac, path: InclusionProof(frac % size, size, path),
    st.integers(1, 2**20),
    st.integers(0, 2**20),
    paths,
)
consistency_proofs = st.builds(
    lambda new, old, path: ConsistencyProof(min(old, new), new, path),
    st.integers(1, 2**20),
    st.integers(0, 2**20),
    paths,
)
chunks = st.builds(
    ChunkPiece,
    st.integers(0, 2**16),
    st.binary(max_size=CHUNK_BYTES),
    st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple),
)
input_pieces = st.builds(
    InputPiece,
    st.none() | hashes,
    st.none() | inclusion_proofs,
    st.lists(chunks, max_size=2).map(tuple),
)
evidence = st.builds(SegmentEvidence, counts, hashes, hashes, inclusion_proofs, inclusion_proofs)

BY_FIELD: dict[str, st.SearchStrategy[Any]] = {
    "job_id": ids,
    "dispute_id": ids,
    "side": st.sampled_from(["left", "right"]),
    "url": st.text(max_size=SetEndpointBody.MAX_URL_LENGTH),
    "spec": st.just(tiny_spec()),
}
BY_TYPE: dict[Any, st.SearchStrategy[Any]] = {
    Hash32: hashes,
    Amount: amounts,
    int: counts,
    bool: st.booleans(),
    bytes: st.binary(max_size=256),
    Address: addresses,
    InclusionProof: inclusion_proofs,
    ConsistencyProof: consistency_proofs,
    JobSpec: st.just(tiny_spec()),
    InputPiece: input_pieces,
}


def _for_type(tp: Any) -> st.SearchStrategy[Any]:
    if tp in BY_TYPE:
        return BY_TYPE[tp]
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple:
        return st.lists(_for_type(args[0]), max_size=3).map(tuple)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | _for_type(inner)
    raise TypeError(f"no strategy for {tp!r}")


def generic(cls: type[TxBody]) -> st.SearchStrategy[TxBody]:
    """Field by field, from the annotations (bodies without cross-field rules)."""
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: BY_FIELD[f.name] if f.name in BY_FIELD else _for_type(hints[f.name])
        for f in dataclasses.fields(typing.cast(Any, cls))
    }
    return st.builds(cls, **fields)


SHAPED: dict[type[TxBody], st.SearchStrategy[TxBody]] = {
    ChallengeBody: st.one_of(
        st.builds(ChallengeBody, ids, st.none()),
        st.builds(ChallengeBody, ids, evidence),
        st.builds(ChallengeBody, ids, st.none(), counts),
        st.builds(lambda j, h: ChallengeBody(j, None, sealed=h), ids, hashes),
    ),
    UnsealBody: st.one_of(
        st.builds(UnsealBody, ids, counts, hashes, st.none()),
        st.builds(lambda d, salt, ev: UnsealBody(d, ev.segment, salt, ev), ids, hashes, evidence),
    ),
    CommitTraceBody: st.one_of(
        st.builds(
            lambda d, r, pre, post, proof: CommitTraceBody(d, r, True, pre, post, (), proof),
            ids,
            hashes,
            _for_type(tuple[Hash32, ...]),
            _for_type(tuple[Hash32, ...]),
            inclusion_proofs,
        ),
        st.builds(
            lambda d, r, pre, post, proofs: CommitTraceBody(d, r, False, pre, post, proofs, None),
            ids,
            hashes,
            _for_type(tuple[Hash32, ...]),
            _for_type(tuple[Hash32, ...]),
            _for_type(tuple[InclusionProof | None, ...]),
        ),
    ),
    RevealOpBody: st.one_of(
        st.builds(RevealOpBody, ids, st.just(True), st.none()),
        st.builds(RevealOpBody, ids, st.just(False), hashes),
    ),
    ShowOverflowBody: st.one_of(
        st.builds(ShowOverflowBody, ids, inclusion_proofs, st.none(), st.just(())),
        st.builds(
            ShowOverflowBody,
            ids,
            st.none(),
            st.integers(0, MAX_PIECE_INPUTS),
            st.lists(
                st.builds(Witness, st.integers(0, 2**20), st.none() | input_pieces), max_size=3
            ).map(tuple),
        ),
    ),
    ClaimTimeoutBody: st.one_of(
        st.builds(ClaimTimeoutBody, ids, st.none()),
        st.builds(ClaimTimeoutBody, st.none(), ids),
    ),
}


def bodies(cls: type[TxBody]) -> st.SearchStrategy[TxBody]:
    return SHAPED[cls] if cls in SHAPED else generic(cls)


@pytest.mark.parametrize("kind", sorted(TX_KINDS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_to_json_round_trips(kind: str, data: st.DataObject) -> None:
    body = data.draw(bodies(TX_KINDS[kind]))
    assert body.kind == kind
    assert parse_body(kind, body.to_json()) == body


def test_every_kind_has_a_body_class_with_its_kind() -> None:
    for kind, cls in TX_KINDS.items():
        assert issubclass(cls, TxBody) and cls.kind == kind


def test_a_typed_body_signs_like_its_dict() -> None:
    key = generate_key()
    body = ChallengeBody("ab" * 32, None, 3)
    typed = sign_transaction(key, "test-chain", 7, body)
    manual = sign_transaction(
        key, "test-chain", 7, "challenge", {"job_id": "ab" * 32, "segment": 3, "withheld": True}
    )
    assert typed.kind == "challenge"
    assert typed.body == manual.body
    assert typed.signing_bytes() == manual.signing_bytes()


def test_a_typed_body_takes_no_second_body() -> None:
    key = generate_key()
    with pytest.raises(TypeError):
        sign_transaction(key, "c", 0, ChallengeBody("ab" * 32, None), {})  # type: ignore[call-overload]

"""The state commitment: a Merkle tree over a state's tensors and their 4 KiB chunks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import EncodingError, ProofError
from protocol.exact import encode_state, init, state_hash
from protocol.hashing import TensorRecord, encode_tensors
from protocol.merkle import EMPTY_ROOT, root_of
from protocol.state_commitment import (
    CHUNK_BYTES,
    ChunkProof,
    StateTree,
    blob_has_root,
    blob_root,
    chunk_count,
    chunk_proof_root,
    data_root,
    merkle_root,
    records_root,
)
from tests.ledger_helpers import tiny_spec


def _record(name: str, values: list[int], shape: tuple[int, ...] | None = None) -> TensorRecord:
    data = torch.tensor(values, dtype=torch.int64).numpy().tobytes()
    return TensorRecord(name, "int64", shape if shape is not None else (len(values),), data)


RECORDS = [
    _record("a.weight", list(range(1300))),  # three chunks, the last one short
    _record("b", list(range(512))),  # exactly one chunk
    _record("empty", [], (0, 3)),  # no chunk at all
    TensorRecord("step", "int64", (), (7).to_bytes(8, "little")),
]


def test_the_root_of_a_state_is_the_root_of_its_blob() -> None:
    state = init(tiny_spec())
    blob = encode_state(state)
    assert blob_root(blob) == state_hash(state) and blob_has_root(blob, state_hash(state))


def test_the_root_does_not_depend_on_record_order() -> None:
    assert records_root(RECORDS) == records_root(list(reversed(RECORDS)))
    assert records_root(RECORDS) == StateTree(RECORDS).root


def test_the_root_binds_every_name_shape_and_value() -> None:
    root = records_root(RECORDS)
    renamed = [replace(RECORDS[1], name="c"), *RECORDS[:1], *RECORDS[2:]]
    reshaped = [replace(RECORDS[1], shape=(2, 256)), *RECORDS[:1], *RECORDS[2:]]
    changed = [_record("b", [*range(511), 0]), *RECORDS[:1], *RECORDS[2:]]
    fewer = RECORDS[:3]
    for other in (renamed, reshaped, changed, fewer):
        assert records_root(other) != root


def test_the_fast_root_is_rfc_9162s_root() -> None:
    entries = [bytes([i]) * 32 for i in range(70)]
    for n in range(71):
        assert merkle_root(entries[:n]) == root_of(entries[:n])


def test_chunking() -> None:
    assert [chunk_count(n) for n in (0, 1, CHUNK_BYTES, CHUNK_BYTES + 1)] == [0, 1, 1, 2]
    assert data_root(b"") == EMPTY_ROOT


def test_every_chunk_of_every_tensor_is_proved_against_the_root() -> None:
    tree = StateTree(RECORDS)
    for record in RECORDS:
        for index in range(chunk_count(len(record.data))):
            proof = tree.chunk_proof(record.name, index)
            chunk = tree.chunk(record.name, index)
            assert chunk_proof_root(chunk, proof) == tree.root
            assert ChunkProof.from_json(proof.to_json()) == proof


def test_a_tampered_chunk_or_proof_does_not_lead_to_the_root() -> None:
    tree = StateTree(RECORDS)
    proof, chunk = tree.chunk_proof("a.weight", 1), tree.chunk("a.weight", 1)
    flipped = bytes([chunk[0] ^ 1]) + chunk[1:]
    sibling = bytes(32)
    forgeries = [
        (flipped, proof),
        (chunk, replace(proof, chunk_path=(sibling, *proof.chunk_path[1:]))),
        (chunk, replace(proof, tensor_path=(sibling, *proof.tensor_path[1:]))),
        (chunk, replace(proof, name="b.weight")),
        (tree.chunk("a.weight", 0), replace(proof, chunk_index=0)),
    ]
    for data, forged in forgeries:
        assert chunk_proof_root(data, forged) != tree.root
    refused = [
        (chunk, replace(proof, chunk_index=3)),  # past the tensor's end
        (chunk[:-8], proof),  # a chunk of the wrong length
        (chunk, replace(proof, shape=(2**40,))),  # no tensor this large
        (chunk, replace(proof, dtype="float64")),  # no such dtype in a state
        (chunk, replace(proof, tensor_index=9)),  # past the state's tensors
    ]
    for data, bad in refused:
        with pytest.raises(ProofError):
            chunk_proof_root(data, bad)


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"name": 1},
        {**StateTree(RECORDS).chunk_proof("b", 0).to_json(), "chunk_path": ["zz"]},
        {**StateTree(RECORDS).chunk_proof("b", 0).to_json(), "shape": [-1]},
        {**StateTree(RECORDS).chunk_proof("b", 0).to_json(), "tensor_index": True},
    ],
)
def test_a_malformed_proof_is_a_proof_error(data: object) -> None:
    with pytest.raises(ProofError):
        ChunkProof.from_json(data)


def test_bytes_that_are_no_blob_have_no_root() -> None:
    with pytest.raises(EncodingError):
        blob_root(b"not a state blob")
    assert not blob_has_root(b"not a state blob", records_root(RECORDS))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=0, max_size=2000))
def test_any_tensor_round_trips_through_its_blob(values: list[int]) -> None:
    records = [_record("t", values), RECORDS[3]]
    blob = encode_tensors(records)
    assert blob_root(blob) == records_root(records)
    tree = StateTree(records)
    for index in range(chunk_count(8 * len(values))):
        assert chunk_proof_root(tree.chunk("t", index), tree.chunk_proof("t", index)) == tree.root

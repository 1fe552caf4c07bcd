"""crafted-blob: a solver commits and serves bytes built to break the decoder — a header that
declares shape ``(0, 2**63)``, 20,000 tiny tensors, or anything a fuzzer finds. Every decoder
raises only ProofNetErrors (bounded by the limits in ``protocol.hashing``), so the verifier
treats the blob as a wrong segment, challenges, and the cheater is slashed while the verifiers
keep policing the other jobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import EncodingError, ProofNetError
from protocol.exact import decode_state, decode_state_for, encode_state, init
from protocol.hashing import BLOB_MAGIC, decode_tensors, encode_tensors
from protocol.spec import JobSpec
from protocol.state_commitment import blob_root
from services.sim.network import Network
from services.sim.scenarios import DEFAULT_TERMS, spec_for
from services.strategies.cheaters import CraftedBlob, crafted_blob
from tests.crafted_blobs import (
    RawTensor,
    huge_empty_shape_blob,
    many_tensors_blob,
    raw_blob,
)

pytestmark = pytest.mark.adversarial

SPEC = spec_for({"model": {"family": "mlp", "input_dim": 16, "hidden": [4], "classes": 4}})
VALID_BLOB = encode_state(init(SPEC))


def decoders(spec: JobSpec) -> list[Callable[[bytes], Any]]:
    return [decode_tensors, decode_state, lambda blob: decode_state_for(spec, blob)]


def only_typed_errors(blob: bytes) -> None:
    """Every decoder either decodes ``blob`` canonically or raises a ProofNetError."""
    for decode in decoders(SPEC):
        try:
            decoded = decode(blob)
        except ProofNetError:
            continue
        encode = encode_tensors if decode is decode_tensors else encode_state
        assert encode(decoded) == blob  # whatever decodes is canonical


# --- the reported blobs ---------------------------------------------------------------------


def test_huge_zero_size_shape_is_an_encoding_error() -> None:
    blob = huge_empty_shape_blob()
    for decode in (decode_tensors, decode_state, blob_root):
        with pytest.raises(EncodingError, match="MAX_DIM"):
            decode(blob)
    with pytest.raises(EncodingError):  # refused by its length already
        decode_state_for(SPEC, blob)


def test_the_committable_crafted_blob_has_a_root_but_is_no_state_of_the_spec() -> None:
    """What the crafted-blob solver commits: bytes within every generic limit (so they have a
    state root), whose step counter is (0, MAX_DIM): a verifier's spec-bound decoder refuses
    them with a typed error."""
    blob = crafted_blob(SPEC)
    assert len(blob_root(blob)) == 32
    with pytest.raises(EncodingError):
        decode_state_for(SPEC, blob)


def test_twenty_thousand_tensors_are_refused_by_the_count_limit() -> None:
    blob = many_tensors_blob(20_000)
    assert len(blob) > 1_000_000
    for decode in (decode_tensors, decode_state):
        with pytest.raises(EncodingError, match="declares 20000 tensors; MAX_TENSORS is 256"):
            decode(blob)
    with pytest.raises(EncodingError):
        decode_state_for(SPEC, blob)


# --- the fuzz -------------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from([b"step", b"layer0.weight", b"layer0.bias", b"momentum.layer0.weight"]),
    st.binary(max_size=8),
    st.integers(0, 300).map(lambda n: b"a" * n),
)
DTYPES = st.one_of(
    st.sampled_from([b"int64", b"float32", b"float64", b"", b"int64\x00"]), st.binary(max_size=6)
)
DIMS = st.one_of(
    st.integers(0, 5),
    st.sampled_from([2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1]),
)
SHAPES = st.lists(DIMS, max_size=10).map(tuple)


@st.composite
def raw_tensors(draw: st.DrawFn) -> RawTensor:
    shape = draw(SHAPES)
    count = 1
    for dim in shape:
        count *= dim
    consistent = 8 * count if count <= 64 else 0
    data = bytes(draw(st.sampled_from([consistent, 0, 1, 7, 8, 64])))
    declared = draw(st.one_of(st.none(), st.sampled_from([0, 8, 2**63, 2**64 - 1])))
    return RawTensor(draw(NAMES), draw(DTYPES), shape, data, declared)


@st.composite
def crafted_blobs(draw: st.DrawFn) -> bytes:
    tensors = draw(st.lists(raw_tensors(), max_size=6))
    count = draw(st.one_of(st.none(), st.sampled_from([0, 1, 257, 2**32 - 1])))
    blob = raw_blob(tensors, count=count, magic=draw(st.sampled_from([BLOB_MAGIC, b"PNST\x02"])))
    cut = draw(st.integers(0, len(blob)))
    return draw(st.sampled_from([blob, blob[:cut], blob + draw(st.binary(min_size=1, max_size=9))]))


@st.composite
def mutated_valid_blobs(draw: st.DrawFn) -> bytes:
    blob = bytearray(VALID_BLOB)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(blob) - 1))
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate", "append"]))
        byte = draw(st.integers(0, 255))
        if kind == "set":
            blob[at] = byte
        elif kind == "insert":
            blob.insert(at, byte)
        elif kind == "delete":
            del blob[at]
        elif kind == "truncate":
            del blob[at:]
        else:
            blob += bytes([byte]) * draw(st.integers(1, 16))
        if not blob:
            break
    return bytes(blob)


@settings(max_examples=300, deadline=None)
@given(crafted_blobs())
def test_fuzzed_headers_raise_only_typed_errors(blob: bytes) -> None:
    only_typed_errors(blob)


@settings(max_examples=300, deadline=None)
@given(mutated_valid_blobs())
def test_mutations_of_a_valid_blob_raise_only_typed_errors(blob: bytes) -> None:
    only_typed_errors(blob)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200).map(lambda tail: BLOB_MAGIC + tail))
def test_random_bytes_after_the_magic_raise_only_typed_errors(blob: bytes) -> None:
    only_typed_errors(blob)


# --- end to end -----------------------------------------------------------------------------


def test_crafted_leaf_is_challenged_and_slashed_while_other_jobs_are_verified() -> None:
    crafted_spec, other_spec = spec_for(seed=3), spec_for(seed=4)
    net = Network(salt="crafted-blob")
    solver = net.add_solver("solver", CraftedBlob(seed=crafted_spec.seed), stake=800)
    solver.store.put_blob(crafted_blob(crafted_spec))  # so that it can serve what it commits
    verifiers = [net.add_verifier("verifier-1"), net.add_verifier("verifier-2")]
    net.warm_up()
    terms = replace(DEFAULT_TERMS, sample_count=crafted_spec.num_segments)  # every segment
    crafted_job = net.post_job(crafted_spec, terms, submitter="submitter-0")
    other_job = net.post_job(other_spec, terms, submitter="submitter-1")

    net.run_jobs(crafted_job, other_job, max_rounds=300)

    crafted, other = net.job(crafted_job), net.job(other_job)
    addresses = {v.address for v in verifiers}
    assert crafted["status"] == "slashed"
    assert set(crafted["challengers"]) == addresses
    assert any(e["kind"] == "slashed" for e in crafted["history"])
    assert other["status"] == "settled"
    assert set(other["attesters"]) == addresses
    for verifier in verifiers:
        assert verifier.checks[crafted_job].bad_segments  # the crafted leaf's segment
        assert verifier.checks[other_job].verdict.action == "attest"

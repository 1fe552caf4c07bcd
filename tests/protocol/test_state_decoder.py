"""The hardened state decoder: each limit refuses with an EncodingError that names it, every
valid state decodes, and the spec-aware decoder refuses a state of another model by its header."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.errors import EncodingError
from protocol.exact import (
    decode_state,
    decode_state_for,
    encode_state,
    init,
    state_blob_size,
)
from protocol.hashing import (
    DTYPE_SIZES,
    MAX_DIM,
    MAX_ELEMENTS,
    MAX_NAME_BYTES,
    MAX_NDIM,
    MAX_TENSORS,
    TensorRecord,
    decode_tensors,
    encode_tensors,
)
from protocol.layout import state_layout
from protocol.spec import JobSpec, parse_spec
from tests.conftest import tiny_spec_dict
from tests.crafted_blobs import (
    RawTensor,
    huge_empty_shape_blob,
    many_tensors_blob,
    raw_blob,
    raw_tensor,
)


def spec_with(hidden: list[int], input_dim: int = 16, classes: int = 4) -> JobSpec:
    model = {"family": "mlp", "input_dim": input_dim, "hidden": hidden, "classes": classes}
    return parse_spec(tiny_spec_dict(model=model))


def refused(blob: Any, match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        decode_tensors(blob)
    with pytest.raises(EncodingError, match=match):
        decode_state(blob)


@pytest.mark.parametrize(
    ("hidden", "input_dim", "classes"), [([], 16, 4), ([16], 16, 4), ([8, 3], 16, 4)]
)
def test_state_blob_size_is_the_length_of_every_state(
    hidden: list[int], input_dim: int, classes: int
) -> None:
    spec = spec_with(hidden, input_dim, classes)
    assert state_blob_size(spec) == len(encode_state(init(spec)))


def test_state_blob_size_of_the_largest_model_needs_no_torch() -> None:
    # 8 hidden layers of 4096: computed from the layout alone (init would take minutes).
    spec = spec_with([4096] * 8, input_dim=4096, classes=4096)
    weights = 9 * 4096 * 4096 + 9 * 4096
    assert state_blob_size(spec) > 2 * 8 * weights


def test_layout_is_what_init_builds(tiny_spec: JobSpec) -> None:
    state = init(tiny_spec)
    layout = state_layout(tiny_spec)
    assert {name: (str(t.dtype), tuple(t.shape)) for name, t in state.items()} == {
        name: (f"torch.{want.dtype}", want.shape) for name, want in layout.items()
    }


def test_valid_state_roundtrips_through_both_decoders(tiny_spec: JobSpec) -> None:
    blob = encode_state(init(tiny_spec))
    assert encode_state(decode_state(blob)) == blob
    assert encode_state(decode_state_for(tiny_spec, blob)) == blob


def test_reported_huge_zero_size_shape_is_refused() -> None:
    refused(huge_empty_shape_blob(), "MAX_DIM")


def test_reported_many_tensors_blob_is_refused_by_the_count_limit() -> None:
    refused(many_tensors_blob(), "MAX_TENSORS")


def test_count_limit_is_inclusive() -> None:
    blob = raw_blob([raw_tensor(f"t{i:03d}", (1,)) for i in range(MAX_TENSORS)])
    assert len(decode_tensors(blob)) == MAX_TENSORS


def test_name_limits() -> None:
    refused(raw_blob([raw_tensor("a" * (MAX_NAME_BYTES + 1), (1,))]), "MAX_NAME_BYTES")
    assert decode_tensors(raw_blob([raw_tensor("a" * MAX_NAME_BYTES, (1,))]))
    refused(raw_blob([raw_tensor("", (1,))]), "not an ASCII identifier")
    refused(raw_blob([raw_tensor("bad name", (1,))]), "not an ASCII identifier")
    refused(raw_blob([raw_tensor("caf\u00e9", (1,))]), "not an ASCII identifier")


def test_dtype_whitelist_is_checked_before_the_shape() -> None:
    # float64 is not whitelisted; the shape that follows would be refused too, but later.
    huge = RawTensor(b"w", b"float64", (2**40, 2**40), b"")
    refused(raw_blob([huge]), "unsupported dtype")
    refused(raw_blob([raw_tensor("w", (1,), dtype="int64" * 4)]), "dtype")
    assert set(DTYPE_SIZES) == {"int64", "float32"}


def test_shape_limits() -> None:
    refused(raw_blob([raw_tensor("w", (1,) * (MAX_NDIM + 1))]), "MAX_NDIM")
    assert decode_tensors(raw_blob([raw_tensor("w", (1,) * MAX_NDIM)]))
    refused(raw_blob([RawTensor(b"w", b"int64", (MAX_DIM + 1, 0), b"")]), "MAX_DIM")
    refused(raw_blob([RawTensor(b"w", b"int64", (0, 2**16, 2**16), b"")]), "MAX_ELEMENTS")
    assert MAX_ELEMENTS < 2**16 * 2**16


def test_consistent_zero_size_tensor_decodes() -> None:
    state = decode_state(raw_blob([raw_tensor("empty", (0, 5)), raw_tensor("step", ())]))
    assert state["empty"].shape == (0, 5)
    assert state["step"].item() == 0


def test_data_length_must_match_the_shape() -> None:
    short = RawTensor(b"w", b"int64", (2, 3), bytes(40))
    refused(raw_blob([short]), "data length")
    lying = RawTensor(b"w", b"int64", (2, 3), bytes(48), data_length=2**64 - 1)
    refused(raw_blob([lying]), "data length")


def test_truncated_trailing_and_bad_magic(tiny_spec: JobSpec) -> None:
    blob = encode_state(init(tiny_spec))
    refused(blob[:-1], "truncated")
    refused(blob + b"\x00", "trailing")
    refused(b"XXXX" + blob[4:], "magic")
    refused(raw_blob([raw_tensor("w", (1,))], count=2), "truncated")


def test_order_and_duplicates() -> None:
    refused(raw_blob([raw_tensor("b", (1,)), raw_tensor("a", (1,))]), "canonical order")
    refused(raw_blob([raw_tensor("a", (1,)), raw_tensor("a", (1,))]), "canonical order")


def test_not_bytes_is_an_encoding_error() -> None:
    refused("PNST", "bytes")
    refused(None, "bytes")


def test_spec_aware_decoder_refuses_another_models_state(tiny_spec: JobSpec) -> None:
    other = spec_with([8])
    with pytest.raises(EncodingError, match="bytes; a state of this spec is"):
        decode_state_for(tiny_spec, encode_state(init(other)))


def test_spec_aware_decoder_checks_each_header(tiny_spec: JobSpec) -> None:
    # Same length, one weight declared transposed: refused by its header, before any tensor.
    records = [
        TensorRecord(
            r.name, r.dtype, r.shape[::-1] if r.name == "layer1.weight" else r.shape, r.data
        )
        for r in decode_tensors(encode_state(init(tiny_spec)))
    ]
    blob = encode_tensors(records)
    assert len(blob) == state_blob_size(tiny_spec)
    decode_state(blob)  # a well-formed state, only not one of this spec
    with pytest.raises(EncodingError, match=r"layer1.weight.*expected int64 \(16, 4\)"):
        decode_state_for(tiny_spec, blob)


def test_spec_aware_decoder_checks_names_and_count(tiny_spec: JobSpec) -> None:
    state = init(tiny_spec)
    renamed = dict(state)
    renamed["momentum.layer0.zzzz"] = renamed.pop("momentum.layer0.bias")  # same length
    blob = encode_state(renamed)
    assert len(blob) == state_blob_size(tiny_spec)
    with pytest.raises(EncodingError, match="not part of the expected state"):
        decode_state_for(tiny_spec, blob)
    del renamed["momentum.layer0.zzzz"]
    with pytest.raises(EncodingError, match="declares 8 tensors; expected 9"):
        decode_tensors(encode_state(renamed), state_layout(tiny_spec))

"""Model families in the spec: every field validated and hashed, unknown ones refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from protocol.errors import SpecError
from protocol.layout import expected_shapes, parameter_count, segment_work
from protocol.models import CnnSpec, TransformerSpec
from protocol.spec import parse_spec, spec_hash
from tests.conftest import tiny_spec_dict

CNN: dict[str, Any] = {
    "family": "cnn",
    "image": [1, 8, 8],
    "conv": [{"channels": 4, "kernel": 3, "padding": 1, "pool": 2}],
    "hidden": [16],
    "classes": 10,
}
TRANSFORMER: dict[str, Any] = {
    "family": "transformer",
    "vocab": 76,
    "context": 16,
    "d_model": 16,
    "heads": 2,
    "layers": 1,
}


def _spec(model: dict[str, Any]) -> Any:
    return parse_spec(tiny_spec_dict(model=model))


def test_cnn_spec_fills_every_default_into_the_hash() -> None:
    spec = _spec(CNN)
    assert isinstance(spec.model, CnnSpec)
    conv = spec.to_dict()["model"]["conv"][0]
    assert conv == {
        "channels": 4,
        "kernel": 3,
        "stride": 1,
        "padding": 1,
        "pool": 2,
        "pool_type": "max",
    }
    explicit = copy.deepcopy(CNN)
    explicit["conv"][0].update(stride=1, pool_type="max")
    assert spec_hash(_spec(explicit)) == spec_hash(spec)  # defaults and explicit agree
    avg = copy.deepcopy(CNN)
    avg["conv"][0]["pool_type"] = "avg"
    assert spec_hash(_spec(avg)) != spec_hash(spec)  # and every field is hashed


def test_cnn_parameters_follow_the_conv_arithmetic() -> None:
    spec = _spec(CNN)
    shapes = expected_shapes(spec)
    assert shapes["conv0.weight"] == (4, 1, 3, 3)
    assert shapes["dense0.weight"] == (4 * 4 * 4, 16)  # 8x8 padded conv, pooled to 4x4
    assert shapes["dense1.weight"] == (16, 10)
    assert parameter_count(spec) == 4 * 9 + 4 + 64 * 16 + 16 + 16 * 10 + 10
    assert segment_work(spec) > 0


def test_transformer_spec_and_parameters() -> None:
    spec = _spec(TRANSFORMER)
    assert isinstance(spec.model, TransformerSpec)
    assert spec.model.ff == 64  # default 4 * d_model, written into the hash
    assert spec.to_dict()["model"]["ff"] == 64
    assert spec.loss_terms == spec.batch_size * 16  # the mean is over every token
    shapes = expected_shapes(spec)
    assert shapes["embed.token"] == (76, 16)
    assert shapes["block0.attn.qkv.weight"] == (16, 48)
    assert shapes["head.weight"] == (16, 76)
    assert "momentum.head.weight" in shapes


BAD_MODELS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown family": ({"family": "rnn"}, "model.family"),
    "cnn unknown field": ({**CNN, "dropout": 0.1}, "model.dropout"),
    "cnn no conv": ({**CNN, "conv": []}, "model.conv"),
    "cnn pool type": (
        {**CNN, "conv": [{"channels": 4, "kernel": 3, "pool_type": "median"}]},
        "model.conv[0].pool_type",
    ),
    "cnn vanishing image": (
        {**CNN, "conv": [{"channels": 4, "kernel": 9}]},
        "model.conv[0]",
    ),
    "cnn collapsed by pooling": (
        {**CNN, "image": [1, 2, 2], "conv": [{"channels": 4, "kernel": 2, "pool": 2}]},
        "model.conv[0]",
    ),
    "transformer context not a power of two": ({**TRANSFORMER, "context": 24}, "model.context"),
    "transformer heads do not divide": ({**TRANSFORMER, "heads": 3}, "model.heads"),
    "transformer unknown field": ({**TRANSFORMER, "dropout": 0.1}, "model.dropout"),
    # 8 x 64 heads x 1024^2 attention scores: memory no verifier should be made to allocate.
    "attention too large to hold": (
        {**TRANSFORMER, "context": 1024, "d_model": 64, "heads": 64},
        "batch_size",
    ),
    "unfolded patches too large to hold": (
        {
            **CNN,
            "image": [1, 256, 256],
            "conv": [{"channels": 8, "kernel": 11, "padding": 5, "pool": 4}],
        },
        "batch_size",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_fields_are_named(case: str) -> None:
    model, field = BAD_MODELS[case]
    with pytest.raises(SpecError) as err:
        _spec(model)
    assert err.value.field == field

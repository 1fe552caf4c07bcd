"""The job spec: validation names the field, hashing is canonical."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import SpecError
from protocol.models import ModelSpec
from protocol.spec import parse_spec, spec_hash, with_steps
from services.jobspec import load_spec
from tests.conftest import EXAMPLE_SPEC, tiny_spec_dict


def test_example_spec_parses() -> None:
    spec, terms = load_spec(EXAMPLE_SPEC)
    assert isinstance(spec.model, ModelSpec)
    assert spec.model.layer_sizes() == [64, 64, 10]
    assert spec.num_leaves == spec.steps // spec.checkpoint_interval + 1
    assert terms["payment"] > 0


def test_spec_hash_is_stable_and_sensitive() -> None:
    spec = parse_spec(tiny_spec_dict())
    assert spec_hash(spec) == spec_hash(parse_spec(tiny_spec_dict()))
    assert spec_hash(spec) != spec_hash(parse_spec(tiny_spec_dict(seed=4)))
    assert spec_hash(parse_spec(spec.to_dict())) == spec_hash(spec)


def _set(data: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("version", 2, "version"),
        ("steps", 0, "steps"),
        ("steps", "ten", "steps"),
        ("steps", True, "steps"),
        ("seed", KeyError, "seed"),
        ("batch_size", 24, "batch_size"),
        ("checkpoint_interval", 5, "checkpoint_interval"),
        ("model.family", "resnet", "model.family"),
        ("model.hidden", "wide", "model.hidden"),
        ("model.classes", 1, "model.classes"),
        ("optimizer.name", "adam", "optimizer.name"),
        ("optimizer.lr_log2", 1, "optimizer.lr_log2"),
        ("optimizer.momentum", 1.5, "optimizer.momentum"),
        ("optimizer.momentum", 0.999995, "optimizer.momentum"),  # Q16 rounds to exactly 1
        ("dataset.hash", "abc", "dataset.hash"),
        ("dataset.id", "", "dataset.id"),
        ("colour", "blue", "colour"),
        ("model.depth", 3, "model.depth"),
    ],
)
def test_invalid_spec_names_the_field(path: str, value: object, field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_set(tiny_spec_dict(), path, value))
    assert info.value.field == field
    assert info.value.code == "malformed_spec"


def test_not_a_mapping() -> None:
    with pytest.raises(SpecError):
        parse_spec(["steps", 3])


def test_with_steps_revalidates() -> None:
    spec = parse_spec(tiny_spec_dict())
    assert with_steps(spec, 8).steps == 8
    with pytest.raises(SpecError):
        with_steps(spec, 6)  # C = 4 must divide steps


def test_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)

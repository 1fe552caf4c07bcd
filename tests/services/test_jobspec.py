"""Spec files: pydantic checks the keys (with a "did you mean"), parse_spec the rules."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from contracts_sim.transactions import PostJobBody
from protocol.errors import SpecError
from protocol.spec import JobSpec, parse_spec
from services.jobspec import (
    AdamWSection,
    CnnSection,
    ConvLayerSection,
    DatasetSection,
    MlpSection,
    SgdSection,
    SpecFile,
    TermsSection,
    TransformerSection,
    load_spec,
)
from tests.conftest import EXAMPLE_SPEC

EXAMPLES = EXAMPLE_SPEC.parent
CNN = EXAMPLES / "digits-cnn.yaml"
ADAMW = EXAMPLES / "digits-mlp-adamw.yaml"
TRANSFORMER = EXAMPLES / "text-transformer.yaml"


def keys(section: type[BaseModel]) -> set[str]:
    return set(section.model_fields)


def spec_of(path: Path) -> JobSpec:
    return load_spec(path)[0]


def test_the_models_keys_are_the_ones_parse_spec_and_the_ledger_use() -> None:
    """One vocabulary: the file models accept exactly what a spec serializes to
    (``JobSpec.to_dict``, each family and optimizer) and what ``post_job`` reads."""
    mlp, cnn, adamw, text = (spec_of(p) for p in (EXAMPLE_SPEC, CNN, ADAMW, TRANSFORMER))
    assert keys(SpecFile) == set(mlp.to_dict()) | {"name", "description", "terms"}
    assert keys(DatasetSection) == set(mlp.to_dict()["dataset"])
    assert keys(MlpSection) == set(mlp.model.to_dict())
    assert keys(CnnSection) == set(cnn.model.to_dict())
    assert keys(ConvLayerSection) == set(cnn.model.to_dict()["conv"][0])
    assert keys(TransformerSection) == set(text.model.to_dict())
    assert keys(SgdSection) == set(mlp.optimizer.to_dict())
    assert keys(AdamWSection) == set(adamw.optimizer.to_dict())
    ledger_terms = {f.name for f in dataclasses.fields(PostJobBody)} - {"spec"}
    assert keys(TermsSection) == ledger_terms


@pytest.mark.parametrize("path", [EXAMPLE_SPEC, CNN, ADAMW, TRANSFORMER])
def test_every_example_loads_with_its_terms(path: Path) -> None:
    spec, terms = load_spec(path)
    document = yaml.safe_load(path.read_text())
    assert spec == parse_spec(document)
    assert terms == document["terms"]


def test_terms_are_only_the_ones_the_file_sets(tmp_path: Path) -> None:
    document = yaml.safe_load(EXAMPLE_SPEC.read_text())
    document["terms"] = {"payment": 5}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    assert load_spec(path)[1] == {"payment": 5}  # defaults are the submitter's (job_terms)
    del document["terms"]
    path.write_text(yaml.safe_dump(document))
    assert load_spec(path)[1] == {}


def edited(base: Path, change: Callable[[dict[str, Any]], None], tmp_path: Path) -> Path:
    document = copy.deepcopy(yaml.safe_load(base.read_text()))
    change(document)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def set_in(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("base", "change", "message"),
    [
        (
            EXAMPLE_SPEC,
            set_in("terms", "paymnet", value=5),
            "terms.paymnet: unknown key; did you mean 'payment'?",
        ),
        (EXAMPLE_SPEC, set_in("sede", value=5), "sede: unknown key; did you mean 'seed'?"),
        (
            EXAMPLE_SPEC,
            set_in("model", "hiden", value=[8]),
            "model.hiden: unknown key; did you mean 'hidden'?",
        ),
        (
            CNN,
            set_in("model", "conv", 1, "kernal", value=3),
            "model.conv[1].kernal: unknown key; did you mean 'kernel'?",
        ),
        (
            TRANSFORMER,
            set_in("model", "d_modle", value=64),
            "model.d_modle: unknown key; did you mean 'd_model'?",
        ),
        (
            EXAMPLE_SPEC,
            set_in("optimizer", "momentun", value=0.5),
            "optimizer.momentun: unknown key; did you mean 'momentum'?",
        ),
        (
            ADAMW,
            set_in("optimizer", "beta_1", value=0.5),
            "optimizer.beta_1: unknown key; did you mean 'beta1'?",
        ),
        (
            EXAMPLE_SPEC,
            set_in("dataset", "hsh", value="00"),
            "dataset.hsh: unknown key; did you mean 'hash'?",
        ),
        (
            EXAMPLE_SPEC,
            set_in("zzz", value=1),
            "zzz: unknown key; known keys: name, description, terms, version,",
        ),
        (
            EXAMPLE_SPEC,
            set_in("terms", "payment", value="5"),
            "terms.payment: must be an integer, got '5'",
        ),
        (EXAMPLE_SPEC, set_in("terms", value=[1]), "terms: must be a mapping, got [1]"),
        (CNN, set_in("model", "conv", value=3), "model.conv: must be a list, got 3"),
    ],
)
def test_unknown_keys_and_mistyped_terms_are_one_line_errors(
    base: Path, change: Callable[[dict[str, Any]], None], message: str, tmp_path: Path
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(edited(base, change, tmp_path))
    assert info.value.message.startswith(message)
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (set_in("batch_size", value=24), "batch_size"),  # not a power of two
        (set_in("model", "family", value="rnn"), "model.family"),
        (set_in("optimizer", "name", value="lion"), "optimizer.name"),
        (set_in("model", value="mlp"), "model"),
        (set_in("dataset", value=3), "dataset"),
        (set_in("steps", value="600"), "steps"),
    ],
)
def test_the_rules_stay_parse_specs(
    change: Callable[[dict[str, Any]], None], field: str, tmp_path: Path
) -> None:
    """Values, families and optimizer names the file models do not judge: parse_spec's
    errors come through unchanged."""
    path = edited(EXAMPLE_SPEC, change, tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    with pytest.raises(SpecError) as direct:
        parse_spec(yaml.safe_load(path.read_text()))
    assert (info.value.field, info.value.message) == (direct.value.field, direct.value.message)
    assert info.value.field == field


def test_an_unknown_key_of_the_other_optimizer_lists_this_ones(tmp_path: Path) -> None:
    path = edited(ADAMW, set_in("optimizer", "momentum", value=0.5), tmp_path)
    with pytest.raises(SpecError, match=r"optimizer\.momentum: unknown key; known keys: name"):
        load_spec(path)


def test_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(binary)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping at the top level"):
        load_spec(listing)

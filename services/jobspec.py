"""Reading job spec files (YAML or JSON) for the CLI and the agents.

Two checks, each done once:

* the file's *shape* — which keys exist at each level, and the ``terms:`` section's types —
  by the pydantic models below (``SpecFile``). An unknown key is refused with the closest known
  one (``terms.paymnet: unknown key; did you mean 'payment'?``), so a typo never silently
  falls back to a default;
* the spec's *rules* — types, ranges, powers of two, divisibility — by
  ``protocol.spec.parse_spec``, the one authority on spec validity (the ledger runs it too).
  The ``terms:`` values' rules (an amount is not negative, at least one sample) are the
  ledger's, checked when the job is posted.

Values of spec keys are typed ``Any`` here on purpose: their rules live in ``parse_spec``.
``tests/services/test_jobspec.py`` checks that these models' keys are exactly the ones
``parse_spec``'s specs serialize (``JobSpec.to_dict``) and the ledger's job order reads
(``PostJobBody``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, StrictInt, Tag, ValidationError
from pydantic_core import ErrorDetails

from protocol.errors import SpecError
from protocol.spec import JobSpec, parse_spec


class _Section(BaseModel):
    """A mapping of a spec file: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSection(_Section):
    id: Any = None
    hash: Any = None


class MlpSection(_Section):
    family: Literal["mlp"]
    input_dim: Any = None
    hidden: Any = None
    classes: Any = None


class ConvLayerSection(_Section):
    channels: Any = None
    kernel: Any = None
    stride: Any = None
    padding: Any = None
    pool: Any = None
    pool_type: Any = None


class CnnSection(_Section):
    family: Literal["cnn"]
    image: Any = None
    conv: list[ConvLayerSection] | None = None
    hidden: Any = None
    classes: Any = None


class TransformerSection(_Section):
    family: Literal["transformer"]
    vocab: Any = None
    context: Any = None
    d_model: Any = None
    heads: Any = None
    layers: Any = None
    ff: Any = None


class SgdSection(_Section):
    name: Literal["sgd"]
    lr_log2: Any = None
    momentum: Any = None


class AdamWSection(_Section):
    name: Literal["adamw"]
    lr_log2: Any = None
    beta1: Any = None
    beta2: Any = None
    eps_log2: Any = None
    weight_decay_log2: Any = None


class TermsSection(_Section):
    """The job order's economic terms (``proofnet submit``); absent ones get defaults."""

    payment: StrictInt | None = None
    verification_fee: StrictInt | None = None
    min_stake: StrictInt | None = None
    sample_count: StrictInt | None = None
    bid_blocks: StrictInt | None = None
    train_blocks: StrictInt | None = None


_MODEL_SECTIONS: dict[str, type[BaseModel]] = {
    "mlp": MlpSection,
    "cnn": CnnSection,
    "transformer": TransformerSection,
}
_OPTIMIZER_SECTIONS: dict[str, type[BaseModel]] = {"sgd": SgdSection, "adamw": AdamWSection}
_UNCHECKED = "unchecked"  # a family or optimizer parse_spec will name as unsupported
_MAPPING = "mapping"
_TAGS = {*_MODEL_SECTIONS, *_OPTIMIZER_SECTIONS, _MAPPING, _UNCHECKED}


def _tag(key: str, known: tuple[str, ...]) -> Any:
    """Pick a section by ``key`` (family, optimizer name); anything else goes to parse_spec."""

    def pick(value: Any) -> str:
        tag = value.get(key) if isinstance(value, dict) else None
        return tag if tag in known else _UNCHECKED

    return Discriminator(pick)


ModelSection = Annotated[
    Annotated[MlpSection, Tag("mlp")]
    | Annotated[CnnSection, Tag("cnn")]
    | Annotated[TransformerSection, Tag("transformer")]
    | Annotated[Any, Tag(_UNCHECKED)],
    _tag("family", tuple(_MODEL_SECTIONS)),
]
OptimizerSection = Annotated[
    Annotated[SgdSection, Tag("sgd")]
    | Annotated[AdamWSection, Tag("adamw")]
    | Annotated[Any, Tag(_UNCHECKED)],
    _tag("name", tuple(_OPTIMIZER_SECTIONS)),
]
DatasetField = Annotated[
    Annotated[DatasetSection, Tag(_MAPPING)] | Annotated[Any, Tag(_UNCHECKED)],
    Discriminator(lambda value: _MAPPING if isinstance(value, dict) else _UNCHECKED),
]


class SpecFile(_Section):
    """A spec file's top level: the spec's keys, a name, a description and the terms."""

    name: Any = None
    description: Any = None
    terms: TermsSection | None = None
    version: Any = None
    model: ModelSection = None
    dataset: DatasetField = None
    seed: Any = None
    steps: Any = None
    batch_size: Any = None
    optimizer: OptimizerSection = None
    checkpoint_interval: Any = None


def _known_keys(section: type[BaseModel]) -> list[str]:
    return list(section.model_fields)


_EXPECTED = {  # pydantic error type -> what the value must be
    "int_type": "an integer",
    "model_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
}


def _error_line(error: ErrorDetails, document: dict[str, Any]) -> SpecError:
    """One pydantic error as a SpecError naming the dotted key (tags dropped)."""
    loc = _without_tags(error["loc"])
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if error["type"] != "extra_forbidden":
        expected = _EXPECTED.get(error["type"], error["msg"].lower())
        return SpecError(field or "file", f"must be {expected}, got {error['input']!r}")
    key = str(loc[-1])
    known = _keys_beside(document, loc[:-1])
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return SpecError(field, f"unknown key; {hint}")


def _without_tags(loc: tuple[str | int, ...]) -> list[str | int]:
    """A location without the union tags pydantic inserts after ``model`` and ``optimizer``
    (``("model", "cnn", "conv", 0, "kernal")`` -> ``["model", "conv", 0, "kernal"]``)."""
    kept: list[str | int] = []
    for index, part in enumerate(loc):
        tagged = index > 0 and loc[index - 1] in ("model", "optimizer", "dataset")
        if not (tagged and isinstance(part, str) and part in _TAGS):
            kept.append(part)
    return kept


def _keys_beside(document: dict[str, Any], parents: list[str | int]) -> list[str]:
    """The keys the section holding an unknown key accepts."""
    section: type[BaseModel] = SpecFile
    value: Any = document
    for part in parents:
        value = value[part]
        if isinstance(part, int):
            continue
        section = _SECTIONS[(section, part)](value)
    return _known_keys(section)


def _model_section(value: Any) -> type[BaseModel]:
    return _MODEL_SECTIONS[value["family"]]


def _optimizer_section(value: Any) -> type[BaseModel]:
    return _OPTIMIZER_SECTIONS[value["name"]]


_SECTIONS: dict[tuple[type[BaseModel], str], Any] = {
    (SpecFile, "terms"): lambda _: TermsSection,
    (SpecFile, "dataset"): lambda _: DatasetSection,
    (SpecFile, "model"): _model_section,
    (SpecFile, "optimizer"): _optimizer_section,
    (CnnSection, "conv"): lambda _: ConvLayerSection,
}


def check_shape(document: dict[str, Any]) -> SpecFile:
    """The document as a ``SpecFile``; SpecError for its first unknown key or mistyped term."""
    try:
        return SpecFile.model_validate(document)
    except ValidationError as exc:
        raise _error_line(exc.errors()[0], document) from None


def read_spec_document(path: str | Path) -> dict[str, Any]:
    """The parsed document; SpecError (field ``file``) for unreadable or non-mapping files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("file", f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SpecError("file", f"{path} is not UTF-8 text") from exc
    try:
        document = yaml.safe_load(text)  # JSON is a subset of YAML
    except yaml.YAMLError as exc:
        raise SpecError("file", f"{path} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SpecError("file", f"{path} must contain a mapping at the top level")
    return document


def load_spec(path: str | Path) -> tuple[JobSpec, dict[str, Any]]:
    """(spec, terms) from a spec file; ``terms`` holds the terms the file sets (no defaults).

    The file's keys are checked first (``check_shape``), then the spec's rules
    (``parse_spec``); either raises SpecError naming the dotted key."""
    document = read_spec_document(path)
    shaped = check_shape(document)
    terms = shaped.terms.model_dump(exclude_none=True) if shaped.terms else {}
    return parse_spec(document), terms

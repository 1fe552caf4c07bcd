"""Reading job spec files (YAML or JSON) for the CLI and the agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from protocol.errors import SpecError
from protocol.spec import JobSpec, parse_spec


def read_spec_document(path: str | Path) -> dict[str, Any]:
    """The parsed document; SpecError (field ``file``) for unreadable or non-mapping files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("file", f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        document = yaml.safe_load(text)  # JSON is a subset of YAML
    except yaml.YAMLError as exc:
        raise SpecError("file", f"{path} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SpecError("file", f"{path} must contain a mapping at the top level")
    return document


def load_spec(path: str | Path) -> tuple[JobSpec, dict[str, Any]]:
    """(spec, terms) from a spec file; ``terms`` is the optional economic section."""
    document = read_spec_document(path)
    terms = document.get("terms") or {}
    if not isinstance(terms, dict):
        raise SpecError("terms", "must be a mapping")
    return parse_spec(document), terms

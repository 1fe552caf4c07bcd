"""docs/threat-model.md stays in step with the code.

The threat model has one row per transaction kind and one per input an agent or the node takes
from the network; each row names the tests that show its rules hold. These tests fail when a
transaction kind or a blob-source input is added without a row, when a row names a kind that no
longer exists, or when a row cites a test that is not there.
"""

from __future__ import annotations

import re

from contracts_sim.transactions import TX_KINDS
from services.agents.blobs import BlobSource
from tests.conftest import ROOT

THREAT_MODEL = ROOT / "docs" / "threat-model.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")
CODE = re.compile(r"`([^`]+)`")


def table_rows(heading: str) -> list[list[str]]:
    """The body rows of the first table under ``## heading``, as lists of cell texts."""
    text = THREAT_MODEL.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def first_code(cell: str) -> str:
    match = CODE.search(cell)
    assert match, f"the first cell {cell!r} names nothing in backticks"
    return match.group(1)


def test_every_transaction_kind_has_exactly_one_row() -> None:
    kinds = [first_code(row[0]) for row in table_rows("Transactions")]
    assert sorted(kinds) == sorted(TX_KINDS)
    assert len(kinds) == len(set(kinds))


def test_every_blob_source_input_has_a_row() -> None:
    inputs = {first_code(row[0]) for row in table_rows("Inputs from the network")}
    methods = {
        name
        for name in vars(BlobSource)
        if not name.startswith("_") and callable(getattr(BlobSource, name))
    }
    assert {f"BlobSource.{m}" for m in methods} <= inputs


def test_every_row_cites_tests_that_exist() -> None:
    for heading in ("Transactions", "Inputs from the network"):
        for row in table_rows(heading):
            refs = TEST_REF.findall(row[-1])
            assert refs, f"{heading}: row {row[0]} cites no test"
            for path, name in refs:
                source = ROOT / path
                assert source.is_file(), f"{row[0]} cites missing file {path}"
                if name:
                    assert re.search(rf"^\s*def {name}\(", source.read_text(), re.M), (
                        f"{row[0]} cites {path}::{name}, which does not exist"
                    )

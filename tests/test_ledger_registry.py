"""set_endpoint: an account announces where it serves data; bad URLs change nothing."""

from __future__ import annotations

import pytest

from contracts_sim.exceptions import MalformedBodyError
from contracts_sim.testing import LedgerHarness


@pytest.fixture
def h() -> LedgerHarness:
    return LedgerHarness({"alice": 10})


def test_set_and_clear_endpoint(h: LedgerHarness) -> None:
    receipt = h.send("alice", "set_endpoint", {"url": "http://127.0.0.1:8601"})
    assert receipt.kinds() == ["endpoint_set"]
    assert h.account("alice").endpoint == "http://127.0.0.1:8601"
    h.send("alice", "set_endpoint", {"url": ""})
    assert h.account("alice").endpoint == ""


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org", "http://has space", "x" * 201, 42, None, "javascript:alert(1)"],
)
def test_malformed_endpoint_changes_nothing(h: LedgerHarness, url: object) -> None:
    h.expect_error("alice", "set_endpoint", {"url": url}, MalformedBodyError)


def test_unknown_field_is_rejected(h: LedgerHarness) -> None:
    h.expect_error("alice", "set_endpoint", {"url": "http://a", "port": 1}, MalformedBodyError)

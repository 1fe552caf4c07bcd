"""set_endpoint: an account announces where it serves data; bad URLs change nothing."""

from __future__ import annotations

import pytest

from contracts_sim.exceptions import InvalidEndpointError, MalformedBodyError
from contracts_sim.registry import check_endpoint_url
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import SetEndpointBody


@pytest.fixture
def h() -> LedgerHarness:
    return LedgerHarness({"alice": 10})


def test_set_and_clear_endpoint(h: LedgerHarness) -> None:
    receipt = h.send("alice", SetEndpointBody("http://127.0.0.1:8601"))
    assert receipt.kinds() == ["endpoint_set"]
    assert h.account("alice").endpoint == "http://127.0.0.1:8601"
    h.send("alice", SetEndpointBody(""))
    assert h.account("alice").endpoint == ""


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org", "http://has space", "x" * 201, 42, None, "javascript:alert(1)"],
)
def test_malformed_endpoint_changes_nothing(h: LedgerHarness, url: object) -> None:
    # a hand-made body: a URL the reader refuses (or not a string), which no SetEndpointBody holds
    h.expect_error("alice", "set_endpoint", {"url": url}, MalformedBodyError)


def test_unknown_field_is_rejected(h: LedgerHarness) -> None:
    body = {"url": "http://a", "port": 1}  # a hand-made body: a field SetEndpointBody lacks
    h.expect_error("alice", "set_endpoint", body, MalformedBodyError)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://127.0.0.1:8601", "http://127.0.0.1:8601"),
        ("https://solver.example.org/data/v1", "https://solver.example.org/data/v1"),
        ("HTTP://Solver.Example.ORG:443/", "http://solver.example.org:443/"),
        ("http://solver-1:8601", "http://solver-1:8601"),
        ("http://localhost:08601", "http://localhost:8601"),
        ("http://10.0.0.7", "http://10.0.0.7"),
        ("http://[::1]:8601", "http://[::1]:8601"),
        ("http://[2001:DB8:0:0::1]/x", "http://[2001:db8::1]/x"),
        ("http://a.example/" + "p" * 170, "http://a.example/" + "p" * 170),
    ],
)
def test_endpoint_url_canonical_form(url: str, canonical: str) -> None:
    assert check_endpoint_url(url) == canonical


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org",
        "file:///etc/passwd",
        "http://",
        "http://user@example.org",
        "http://example.org?x=1",
        "http://example.org/a#b",
        "http://example.org/a b",
        "http://example.org/\n",
        "http://-bad-.example",
        "http://example..org",
        "http://example.org.",
        "http://" + "a" * 64 + ".org",
        "http://example.org:0",
        "http://example.org:65536",
        "http://example.org:",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0:8601",
        "http://255.255.255.255",
        "http://224.0.0.1",
        "http://240.0.0.1",
        "http://2130706433",
        "http://0x7f.1",
        "http://0251.0376.0251.0376",
        "http://[fe80::1]",
        "http://[::]",
        "http://[::ffff:169.254.169.254]",
        "http://[fe80::1%25eth0]",
        "http://a.example/" + "p" * 200,
    ],
)
def test_endpoint_url_refused(url: str) -> None:
    with pytest.raises(InvalidEndpointError) as caught:
        check_endpoint_url(url)
    assert caught.value.code == "invalid_endpoint"

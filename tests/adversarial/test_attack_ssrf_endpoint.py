"""ssrf-endpoint: a solver announces an endpoint that turns every verifier into its proxy.

Verifiers send GETs to the URL a solver registers with ``set_endpoint``. Before the rule the
ledger took any ``http(s)://`` string, so a solver chose the host, path and query: the cloud
metadata service, a database port behind the verifier, a query string the verifier's requests
then carry. The ledger now refuses each with ``invalid_endpoint`` and changes nothing.
"""

from __future__ import annotations

import pytest

from contracts_sim.exceptions import InvalidEndpointError
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import SetEndpointBody

pytestmark = pytest.mark.adversarial

HONEST = "http://127.0.0.1:8601"
ATTACKS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fe80::a9fe:a9fe]/",
    "http://[::ffff:169.254.169.254]/",
    "http://2852039166/",  # 169.254.169.254 as one number
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://127.0.0.1:5432/?sslmode=disable",
    "http://solver.example/leaves?redirect=http://169.254.169.254",
    "http://solver.example/#fragment",
    "http://admin:secret@solver.example/",
    "http://solver.example@169.254.169.254/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "http://0.0.0.0:8601",
    "http://solver.example/\r\nX-Injected: 1",
]


@pytest.mark.parametrize("url", ATTACKS)
def test_the_ledger_refuses_an_endpoint_a_verifier_must_not_be_sent_to(url: str) -> None:
    h = LedgerHarness({"solver": 10})
    h.send("solver", SetEndpointBody(HONEST))
    error = h.expect_error("solver", SetEndpointBody(url), error=InvalidEndpointError)
    assert error.code == "invalid_endpoint"
    assert h.account("solver").endpoint == HONEST


def test_an_honest_endpoint_is_stored_in_canonical_form() -> None:
    h = LedgerHarness({"solver": 10})
    receipt = h.send("solver", SetEndpointBody("HTTP://Solver.Example:08601/data"))
    assert h.account("solver").endpoint == "http://solver.example:8601/data"
    assert receipt.event("endpoint_set").data["url"] == "http://solver.example:8601/data"

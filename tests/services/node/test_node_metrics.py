"""The node's Prometheus metrics: transactions submitted in-process move the counters by kind
and result, blocks and their transactions are counted, the state gauges (height, mempool, open
disputes, slashes) follow the chain, requests are timed by route template, and two nodes in
one process keep separate counts. And what the node logs: polled endpoints never reach the
access log."""

from __future__ import annotations

import logging
import warnings

from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from contracts_sim.chain import Chain
from contracts_sim.transactions import (
    BidBody,
    ChallengeBody,
    ClaimTimeoutBody,
    CloseBiddingBody,
    StakeBody,
    TransferBody,
)
from protocol.merkle import CommitmentTree
from protocol.types import Amount
from services.cli import app as cli
from services.cli import chain as _chain_commands  # noqa: F401  (registers `chain` on cli)
from services.node import create_app
from services.node.access_log import PollingFilter
from tests.ledger_helpers import JOB_TERMS, fake_leaves, final_commit, job_posting
from tests.services.node.test_node_api import (
    ALICE,
    KEYS,
    Signer,
    _signed,
    dev_settings,
    make_chain,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: TestClient) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def submitted(samples: Samples, kind: str, result: str, code: str = "") -> float:
    return value(
        samples, "proofnet_transactions_submitted_total", kind=kind, result=result, code=code
    )


def node(chain: Chain | None = None) -> TestClient:
    return TestClient(create_app(dev_settings(), chain=chain or make_chain()))


def test_submissions_count_by_kind_and_result_and_blocks_count_what_they_applied() -> None:
    chain = make_chain()
    api = node(chain)
    signer = Signer(api)
    signer.send(ALICE, StakeBody(Amount(50)))  # ?wait=true on a dev node: one block
    stale = signer.tx(ALICE, StakeBody(Amount(1)), nonce=0)
    assert api.post("/txs", json=stale).status_code == 409
    too_high = signer.tx(ALICE, TransferBody(KEYS["bob"].address, Amount(1)), nonce=9)
    assert api.post("/txs", json=too_high).status_code == 409
    made_up = _signed("mint_everything", {}, nonce=1)  # a hand-made body: no such kind
    assert api.post("/txs", json=made_up).status_code == 400
    pending = signer.tx(KEYS["bob"], TransferBody(ALICE.address, Amount(3)))
    assert api.post("/txs", json=pending).status_code == 202  # waits in the mempool

    samples = scrape(api)
    assert submitted(samples, "stake", "accepted") == 1
    assert submitted(samples, "stake", "rejected", "nonce_too_low") == 1
    assert submitted(samples, "transfer", "rejected", "nonce_too_high") == 1
    assert submitted(samples, "transfer", "accepted") == 1
    assert submitted(samples, "unknown", "rejected", "unknown_transaction_kind") == 1
    assert value(samples, "proofnet_blocks_sealed_total") == 1
    assert value(samples, "proofnet_transactions_included_total", kind="stake") == 1
    assert value(samples, "proofnet_chain_height") == chain.height == 1
    assert value(samples, "proofnet_mempool_transactions") == 1

    api.post("/dev/blocks", params={"count": 2})
    samples = scrape(api)
    assert value(samples, "proofnet_blocks_sealed_total") == 3
    assert value(samples, "proofnet_transactions_included_total", kind="transfer") == 1
    assert value(samples, "proofnet_mempool_transactions") == 0
    assert value(samples, "proofnet_chain_height") == 3


def test_requests_are_timed_by_route_template_not_by_url() -> None:
    api = node()
    api.get(f"/accounts/{ALICE.address}")
    api.get(f"/accounts/{KEYS['bob'].address}")
    api.get("/accounts/not-an-address")
    api.get("/nowhere")
    samples = scrape(api)
    count = "proofnet_http_request_duration_seconds_count"
    route = "/accounts/{address}"
    assert value(samples, count, method="GET", route=route, status="200") == 2
    assert value(samples, count, method="GET", route=route, status="400") == 1
    assert value(samples, count, method="GET", route="unmatched", status="404") == 1
    assert not any("not-an-address" in str(labels) for _, labels in samples)


def test_a_dispute_is_counted_open_then_the_timed_out_solver_as_slashed() -> None:
    chain = make_chain()
    api = node(chain)
    s = Signer(api)
    solver, challenger = KEYS["solver"], KEYS["v2"]
    s.send(solver, StakeBody(Amount(1_000)))
    s.send(challenger, StakeBody(Amount(100)))
    posted = api.post("/jobs", json=s.tx(ALICE, job_posting()))
    job_id = posted.json()["job_id"]
    s.send(solver, BidBody(job_id, Amount(800), 8))
    api.post("/dev/blocks", params={"count": JOB_TERMS["bid_blocks"] + 1})
    s.send(KEYS["bob"], CloseBiddingBody(job_id))
    s.send(solver, final_commit(job_id, CommitmentTree(fake_leaves())))
    api.post("/dev/blocks", params={"count": 2})
    challenged = s.send(challenger, ChallengeBody(job_id, None))
    dispute_id = challenged["events"][0]["data"]["dispute_id"]

    samples = scrape(api)
    assert value(samples, "proofnet_disputes_open") == 1
    assert value(samples, "proofnet_jobs", status="committed") == 1
    assert value(samples, "proofnet_solver_slashes_total") == 0
    assert submitted(samples, "post_job", "accepted") == 1

    deadline = api.get(f"/disputes/{dispute_id}").json()["deadline"]
    api.post("/dev/blocks", params={"count": deadline - chain.height + 1})
    s.send(KEYS["bob"], ClaimTimeoutBody(None, dispute_id))  # the solver never moved

    samples = scrape(api)
    assert value(samples, "proofnet_disputes_open") == 0
    assert value(samples, "proofnet_solver_slashes_total") == 1
    assert value(samples, "proofnet_jobs", status="slashed") == 1


def test_two_nodes_in_one_process_keep_separate_counts() -> None:
    first, second = node(), node()
    Signer(first).send(ALICE, StakeBody(Amount(5)))
    assert submitted(scrape(first), "stake", "accepted") == 1
    assert submitted(scrape(second), "stake", "accepted") == 0


def test_the_metrics_speak_openmetrics_when_asked() -> None:
    api = node()
    response = api.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


# --- access log -----------------------------------------------------------------------------


def access_record(path: str) -> logging.LogRecord:
    """A record as uvicorn's access logger makes it."""
    args = ("127.0.0.1:5000", "GET", path, "1.1", 200)
    return logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None
    )


def test_the_access_log_drops_polling_endpoints_and_keeps_the_rest_as_fields() -> None:
    keep = PollingFilter()
    for polled in ("/events?since=3&timeout=20", "/health", "/metrics", "/explorer/api/overview"):
        assert not keep.filter(access_record(polled)), polled
    record = access_record(f"/jobs/{'ab' * 32}")
    assert keep.filter(record)
    fields = {name: getattr(record, name) for name in ("method", "path", "status")}
    assert fields == {"method": "GET", "path": f"/jobs/{'ab' * 32}", "status": 200}
    assert keep.filter(access_record("/events-log"))  # only the polled routes themselves


def test_chain_serve_refuses_an_unknown_log_format_in_one_line() -> None:
    result = CliRunner().invoke(
        cli, ["chain", "serve", "--dev", "--db", "memory://", "--log-format", "xml"]
    )
    assert result.exit_code == 2
    assert "unknown_log_format" in result.output and "'xml'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output

"""One scenario, two backends: ``HttpChainClient`` on the node app and ``LocalChainClient`` on a
``Chain`` give identical results (same receipts, blocks, events, views and errors)."""

from __future__ import annotations

import socket
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import services.client
from contracts_sim.beacon import shared_beacon_key
from contracts_sim.chain import Chain
from contracts_sim.crypto import key_from_seed
from contracts_sim.transactions import (
    AttestBody,
    BidBody,
    CloseBiddingBody,
    FaucetBody,
    SettleBody,
    StakeBody,
)
from protocol.errors import ProofNetError
from protocol.merkle import CommitmentTree
from protocol.types import Amount
from services.client import (
    ChainClient,
    ClientError,
    HttpChainClient,
    LocalChainClient,
    Wallet,
)
from services.node import NodeSettings, create_app
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import fake_leaves, final_commit, job_posting

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

CHAIN_ID = "client-test"
T0 = 1_700_000_000
ALICE = key_from_seed("client/alice")
SOLVER = key_from_seed("client/solver")
VERIFIER = key_from_seed("client/verifier")
HEX64 = "cd" * 32


def make_chain() -> Chain:
    return Chain.open(
        None,
        CHAIN_ID,
        "test",
        {ALICE.address: 100_000},
        genesis_time=T0,
        beacon_key=shared_beacon_key(),  # both backends' chains give the same blocks
        clock=lambda: T0,
        check_invariants=True,
    )


def local_client() -> LocalChainClient:
    return LocalChainClient(make_chain())


def http_client() -> HttpChainClient:
    settings = NodeSettings(
        db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
    )
    return HttpChainClient(http=TestClient(create_app(settings, chain=make_chain())))


BACKENDS: dict[str, Callable[[], ChainClient]] = {"local": local_client, "http": http_client}


def error_of(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.code, info.value.status


def play(client: ChainClient) -> list[tuple[str, Any]]:
    """A job from posting to settlement, plus the errors an agent meets on the way."""
    out: list[tuple[str, Any]] = []
    alice, solver, verifier = (Wallet(k, client) for k in (ALICE, SOLVER, VERIFIER))
    out.append(("chain", (client.chain_id(), client.params(), client.head_height())))

    out.append(("faucet", solver.send(FaucetBody(Amount(50_000)), wait=True).to_json()))
    out.append(("faucet", verifier.send(FaucetBody(Amount(5_000)), wait=True).to_json()))
    out.append(("stake", solver.send(StakeBody(Amount(1_000)), wait=True).to_json()))
    out.append(("stake", verifier.send(StakeBody(Amount(100)), wait=True).to_json()))

    posted = alice.post_job(job_posting())
    job_id = posted.job_id
    out.append(("post_job", (job_id, posted.receipt.to_json())))
    out.append(("open jobs", client.list_jobs(status="open")))
    out.append(("jobs by id", client.list_jobs(job_ids=[job_id, HEX64])))
    out.append(("no jobs by id", client.list_jobs(job_ids=[HEX64])))
    out.append(("open jobs by id", client.list_jobs(status="settled", job_ids=[job_id])))

    bid = solver.send(BidBody(job_id, Amount(700), 8))
    out.append(("bid pending", bid.to_json()))
    out.append(("block", client.produce_block().to_json()))
    out.append(("bid receipt", client.receipt(bid.tx_hash).to_json()))
    while client.head_height() <= client.get_job(job_id)["bid_deadline"]:
        client.produce_block()
    out.append(("close", alice.send(CloseBiddingBody(job_id), wait=True).to_json()))
    final = final_commit(job_id, CommitmentTree(fake_leaves()))
    out.append(("final", solver.send(final, wait=True).to_json()))
    out.append(("seed not ready", error_of(lambda: client.sample(job_id, VERIFIER.address))))
    client.produce_block()
    out.append(("sample", client.sample(job_id, VERIFIER.address)))
    out.append(("attest", verifier.send(AttestBody(job_id), wait=True).to_json()))
    while client.head_height() <= client.get_job(job_id)["challenge_deadline"]:
        client.produce_block()
    out.append(("settle", alice.send(SettleBody(job_id), wait=True).to_json()))
    out.append(("job", client.get_job(job_id)))
    out.append(("accounts", [client.get_account(k.address) for k in (ALICE, SOLVER, VERIFIER)]))
    out.append(("nonces", [client.pending_nonce(k.address) for k in (ALICE, SOLVER, VERIFIER)]))
    out.append(("disputes", client.list_disputes(job_id)))
    out.append(("supply", client.supply()))
    out.append(("chain head", client.chain_head()))

    events = client.events_since(0, limit=1000)
    out.append(("events", [e.to_json() for e in events]))
    out.append(("events page", [e.id for e in client.events_since(3, limit=2)]))
    out.append(("head", client.head_block().to_json()))
    out.append(("block 1", client.get_block(1).to_json()))

    out.append(("unknown job", error_of(lambda: client.get_job(HEX64))))
    out.append(("bad job id", error_of(lambda: client.get_job("nope"))))
    out.append(("unknown dispute", error_of(lambda: client.get_dispute(HEX64))))
    out.append(("unknown receipt", error_of(lambda: client.receipt(HEX64))))
    out.append(("unknown block", error_of(lambda: client.get_block(10_000))))
    out.append(("bad address", error_of(lambda: client.get_account("0x12"))))
    out.append(("bad status", error_of(lambda: client.list_jobs(status="bogus"))))
    poor = Wallet(key_from_seed("client/poor"), client)
    out.append(("no funds", error_of(lambda: poor.send(StakeBody(Amount(1))))))
    out.append(("wrong kind", error_of(lambda: client.post_job(alice.sign(StakeBody(Amount(1)))))))
    return out


def test_http_and_local_backends_give_the_same_results() -> None:
    local, http = play(local_client()), play(http_client())
    assert [label for label, _ in local] == [label for label, _ in http]
    for (label, a), (_, b) in zip(local, http, strict=True):
        assert a == b, label


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_jobs_by_id_name_only_those_jobs(backend: str) -> None:
    client = BACKENDS[backend]()
    alice = Wallet(ALICE, client)
    posted = [alice.post_job(job_posting(tiny_spec_dict(seed=s))) for s in (1, 2, 3)]
    ids = [p.job_id for p in posted]
    assert [j["job_id"] for j in client.list_jobs(job_ids=[ids[2], ids[0]])] == sorted(
        [ids[0], ids[2]], key=[j["job_id"] for j in client.list_jobs()].index
    )
    assert client.list_jobs(job_ids=[]) == []
    assert error_of(lambda: client.list_jobs(job_ids=["nope"]))[0] == "invalid_identifier"
    head = client.chain_head()
    assert head.height == client.head_height()
    assert head.last_event_id == client.events_since(0, limit=1000)[-1].id


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_the_scenario_settles_the_job(backend: str) -> None:
    results = dict(play(BACKENDS[backend]()))
    job = results["job"]
    assert job["status"] == "settled" and job["solver"] == SOLVER.address
    assert [e["kind"] for e in job["history"]][-1] == "job_settled"
    assert results["seed not ready"] == ("sample_seed_not_ready", 409)
    assert results["unknown job"] == ("job_not_found", 404)
    assert results["bad job id"] == ("invalid_identifier", 400)
    assert results["no funds"] == ("insufficient_balance", 402)
    assert results["wrong kind"] == ("wrong_transaction_kind", 400)
    assert results["bid pending"]["status"] == "pending"
    assert results["bid receipt"]["status"] == "applied"
    supply = results["supply"]
    assert supply["holds"] and supply["held"] == supply["issued"] == 100_000 + 55_000


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_wallet_resyncs_its_nonce_after_someone_else_used_it(backend: str) -> None:
    client = BACKENDS[backend]()
    first, second = Wallet(ALICE, client), Wallet(ALICE, client)
    first.send(StakeBody(Amount(1)), wait=True)
    second.sync()
    second.send(StakeBody(Amount(2)), wait=True)  # first's local nonce is now stale
    receipt = first.send(StakeBody(Amount(4)), wait=True)  # nonce_too_low -> resync -> ok
    assert receipt.status == "applied"
    assert client.pending_nonce(ALICE.address) == 3
    assert client.get_account(ALICE.address)["bonded"] == 7


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_submit_is_idempotent(backend: str) -> None:
    client = BACKENDS[backend]()
    tx = Wallet(ALICE, client).sign(StakeBody(Amount(5)))
    assert client.submit(tx).status == "pending"
    assert client.submit(tx.to_json()).status == "pending"
    applied = client.submit(tx, wait=True)
    assert applied.status == "applied" and client.submit(tx) == applied
    assert client.get_account(ALICE.address)["bonded"] == 5


def test_the_local_client_without_automine_refuses_to_wait() -> None:
    client = LocalChainClient(make_chain(), automine=False)
    tx = Wallet(ALICE, client).sign(StakeBody(Amount(5)))
    assert error_of(lambda: client.submit(tx, wait=True)) == ("no_block_producer", 400)


def test_http_errors_without_a_json_body_still_raise_client_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/params":
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(200, text="not json")

    client = HttpChainClient("http://node.invalid", transport=httpx.MockTransport(handler))
    assert error_of(client.head_height) == ("unreachable", 0)
    assert error_of(client.params) == ("http_error", 502)
    assert error_of(lambda: client.get_account(ALICE.address)) == ("bad_response", 200)
    client.close()


def agent_like(request: httpx.Request) -> httpx.Response:
    """A solver agent's server: /health names its role; the chain's routes do not exist."""
    if request.url.path == "/health":
        return httpx.Response(200, json={"status": "ok", "role": "solver", "address": "ab" * 20})
    return httpx.Response(404, json={"error": {"code": "not_found", "message": "Not Found"}})


def test_an_agents_url_is_named_as_not_a_chain_node() -> None:
    client = HttpChainClient("http://127.0.0.1:8601", transport=httpx.MockTransport(agent_like))
    with pytest.raises(ClientError) as info:
        client.get_job(HEX64)
    assert info.value.code == "not_a_chain_node"
    assert str(info.value) == (
        "not_a_chain_node: http://127.0.0.1:8601 is not a ProofNet chain node "
        "(it is a solver agent); pass the chain node's URL to --chain"
    )
    assert error_of(client.params)[0] == "not_a_chain_node"  # learnt once, said every time


def test_a_web_page_is_not_a_chain_node() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>hello</html>")

    client = HttpChainClient("http://example.invalid", transport=httpx.MockTransport(handler))
    with pytest.raises(ClientError, match="its /health is not a chain node's") as info:
        client.params()
    assert info.value.code == "not_a_chain_node"


def test_a_missing_record_on_a_real_node_stays_not_found() -> None:
    client = http_client()
    assert error_of(lambda: client.get_job(HEX64)) == ("job_not_found", 404)
    assert error_of(lambda: client.get_block(10**6))[1] == 404


def test_connection_refused_names_the_url() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpChainClient(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(ClientError) as info:
        client.params()
    assert info.value.code == "unreachable"
    assert info.value.message.startswith(f"no chain node answers at http://127.0.0.1:{port} (")
    assert "\n" not in info.value.message


def test_client_errors_are_proofnet_errors() -> None:
    error = ClientError("nonce_too_low", "replay", 409)
    assert isinstance(error, ProofNetError)
    assert (error.code, error.message, error.status, error.http_status) == (
        "nonce_too_low",
        "replay",
        409,
        409,
    )


def test_both_backends_satisfy_the_protocol() -> None:
    assert isinstance(local_client(), ChainClient)
    assert isinstance(http_client(), ChainClient)


def test_the_public_api_is_curated() -> None:
    assert services.client.__all__ == sorted(services.client.__all__)
    for name in services.client.__all__:
        assert hasattr(services.client, name)

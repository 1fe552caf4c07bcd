"""State proofs over HTTP: /proofs/... and HttpChainClient.proven_record (a light client's read)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from contracts_sim.beacon import generate_beacon_key, shared_beacon_key
from contracts_sim.blocks import Block
from contracts_sim.chain import Chain
from contracts_sim.crypto import key_from_seed
from contracts_sim.exceptions import InvalidHeaderSignatureError, StateProofError
from contracts_sim.records import Account
from contracts_sim.state import ACCOUNTS, JOBS
from contracts_sim.transactions import sign_transaction
from protocol.hashing import sha256
from protocol.types import Amount
from services.client import HttpChainClient
from services.node import NodeSettings, create_app
from services.node.views import block_view
from tests.ledger_helpers import post_job_body

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

CHAIN_ID = "proofs-test"
T0 = 1_700_000_000
ALICE = key_from_seed("proofs/alice")
NOBODY = key_from_seed("proofs/nobody")
PRODUCER = shared_beacon_key().public_key
"""The producer key the client pins (the chains here are made with the shared key)."""


@pytest.fixture
def chain() -> Chain:
    chain = Chain.open(
        None,
        CHAIN_ID,
        "test",
        {ALICE.address: 10**9},
        genesis_time=T0,
        clock=lambda: T0,
        beacon_key=shared_beacon_key(),
    )
    chain.submit(sign_transaction(ALICE, CHAIN_ID, 0, "post_job", post_job_body()))
    chain.produce_block()
    return chain


@pytest.fixture
def api(chain: Chain) -> TestClient:
    settings = NodeSettings(
        db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
    )
    return TestClient(create_app(settings, chain=chain))


@pytest.fixture
def client(api: TestClient) -> HttpChainClient:
    return HttpChainClient(http=api)


def job_id(chain: Chain) -> str:
    (job,) = chain.list_jobs()
    return job.job_id


def test_present_rows_are_proved_against_the_head(chain: Chain, client: HttpChainClient) -> None:
    account = client.proven_record("accounts", ALICE.address, producer_key=PRODUCER)
    assert account == chain.state.record_to_json(ACCOUNTS, ALICE.address)
    job = client.proven_record("jobs", job_id(chain), chain.head, producer_key=PRODUCER)
    assert job == chain.state.record_to_json(JOBS, job_id(chain))
    assert client.proven_record("jobs", "0x" + job_id(chain).upper(), producer_key=PRODUCER) == job


def test_absent_rows_are_proved_absent(chain: Chain, client: HttpChainClient) -> None:
    assert client.proven_record("accounts", NOBODY.address, producer_key=PRODUCER) is None
    assert client.proven_record("jobs", "ab" * 32, chain.head, producer_key=PRODUCER) is None
    assert client.proven_record("disputes", "cd" * 32, producer_key=PRODUCER) is None


def test_a_proof_answer_names_its_block_and_changes_nothing(chain: Chain, api: TestClient) -> None:
    root, head = chain.state.state_root(), chain.head
    answer = api.get(f"/proofs/jobs/{job_id(chain)}").json()
    assert answer["height"] == head.height and answer["state_root"] == root.hex()
    assert answer["table"] == JOBS and answer["key"] == job_id(chain)
    assert answer["proof"]["leaf"] is not None and answer["proof"]["siblings"]
    assert chain.state.state_root() == root and chain.head == head


def test_a_header_of_another_block_or_root_is_refused(
    chain: Chain, client: HttpChainClient
) -> None:
    with pytest.raises(StateProofError, match="against block"):
        client.proven_record(
            "accounts", ALICE.address, chain.get_block(0).header, producer_key=PRODUCER
        )
    forged = replace(chain.head, state_root=sha256(b"another state"))
    with pytest.raises(InvalidHeaderSignatureError):  # the producer signed another root
        client.proven_record("accounts", ALICE.address, forged, producer_key=PRODUCER)
    resigned = replace(chain.head, state_root=sha256(b"another state")).signed(shared_beacon_key())
    with pytest.raises(StateProofError):  # a root the producer signed, not the proof's
        client.proven_record("accounts", ALICE.address, resigned, producer_key=PRODUCER)


def tampering_client(api: TestClient, tamper: Callable[[dict[str, Any]], None]) -> HttpChainClient:
    """A client whose node answers proofs through ``tamper`` (a node that lies)."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = api.request(request.method, str(request.url.raw_path, "ascii"))
        data = answer.json()
        if request.url.path.startswith("/proofs/"):
            tamper(data)
        return httpx.Response(answer.status_code, json=data)

    return HttpChainClient("http://node", transport=httpx.MockTransport(handle))


def _more_money(data: dict[str, Any]) -> None:
    data["record"]["balance"] += 1


def _flip_sibling(data: dict[str, Any]) -> None:
    siblings = data["proof"]["siblings"]
    siblings[-1] = sha256(bytes.fromhex(siblings[-1])).hex()


def _other_root(data: dict[str, Any]) -> None:
    data["state_root"] = sha256(b"x").hex()


def _hide_the_record(data: dict[str, Any]) -> None:
    data["record"] = None


def _other_key(data: dict[str, Any]) -> None:
    data["key"] = NOBODY.address


def _malformed_proof(data: dict[str, Any]) -> None:
    data["proof"] = {"leaf": None}


@pytest.mark.parametrize(
    "tamper",
    [_more_money, _flip_sibling, _other_root, _hide_the_record, _other_key, _malformed_proof],
)
def test_a_tampered_answer_fails_with_a_typed_error(
    api: TestClient, chain: Chain, tamper: Callable[[dict[str, Any]], None]
) -> None:
    client = tampering_client(api, lambda data: None)
    assert (
        client.proven_record("accounts", ALICE.address, chain.head, producer_key=PRODUCER)
        is not None
    )
    liar = tampering_client(api, tamper)
    with pytest.raises(StateProofError) as caught:
        liar.proven_record("accounts", ALICE.address, chain.head, producer_key=PRODUCER)
    assert caught.value.code == "invalid_state_proof"


@pytest.mark.parametrize(
    "path",
    [
        "/proofs/jobs/12",
        "/proofs/disputes/" + "g" * 64,
        "/proofs/accounts/0x1234",
        "/proofs/accounts/alice",
    ],
)
def test_a_bad_id_is_a_400_json_error(api: TestClient, chain: Chain, path: str) -> None:
    root = chain.state.state_root()
    response = api.get(path)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_identifier" and error["message"]
    assert chain.state.state_root() == root


def test_a_node_cannot_invent_a_state_root(api: TestClient, chain: Chain) -> None:
    """A dishonest node proves a balance of 10**18 against an invented state and serves the
    real header with that state root (the beacon, over chain id and height only, still
    verifies). The client pins the producer key: the header's producer signature fails,
    whether the header is the node's (``header=None``) or one the client read from it."""
    invented = chain.state.copy()
    invented.set_account(ALICE.address, Account(balance=Amount(10**18)))
    head = chain.head
    forged = replace(head, state_root=invented.state_root())
    forged_block = Block(forged, chain.head_block().transactions)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/proofs/accounts/"):
            proof = invented.prove(ACCOUNTS, ALICE.address).to_json()
            answer = {
                "table": ACCOUNTS,
                "key": ALICE.address,
                "record": invented.record_to_json(ACCOUNTS, ALICE.address),
                "height": head.height,
                "state_root": forged.state_root.hex(),
                "proof": proof,
            }
            return httpx.Response(200, json=answer)
        if request.url.path in (f"/blocks/{head.height}", "/blocks/head"):
            return httpx.Response(200, json=block_view(forged_block))
        answer = api.request(request.method, str(request.url.raw_path, "ascii"))
        return httpx.Response(answer.status_code, json=answer.json())

    liar = HttpChainClient("http://node", transport=httpx.MockTransport(handle))
    with pytest.raises(InvalidHeaderSignatureError):
        liar.proven_record("accounts", ALICE.address, producer_key=PRODUCER)
    with pytest.raises(InvalidHeaderSignatureError):
        liar.proven_record(
            "accounts", ALICE.address, liar.head_block().header, producer_key=PRODUCER
        )
    with pytest.raises(StateProofError):  # the true header: the proof does not match it
        liar.proven_record("accounts", ALICE.address, head, producer_key=PRODUCER)
    other_producer = generate_beacon_key().public_key
    honest = tampering_client(api, lambda data: None)
    with pytest.raises(InvalidHeaderSignatureError):  # not the key the client pinned
        honest.proven_record("accounts", ALICE.address, producer_key=other_producer)

"""The chain node's REST API: happy paths, a job's lifecycle, long-polls, and a table of bad
requests that must all get a 4xx JSON error and change nothing (never a 500)."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from contracts_sim.beacon import verify_beacon
from contracts_sim.chain import Chain
from contracts_sim.crypto import PrivateKey, key_from_seed
from contracts_sim.transactions import (
    AttestBody,
    BidBody,
    ChallengeBody,
    CloseBiddingBody,
    FaucetBody,
    SettleBody,
    StakeBody,
    TransferBody,
    TxBody,
    sign_transaction,
)
from protocol.hashing import sha256
from protocol.merkle import CommitmentTree
from protocol.types import Amount
from services.node import NodeSettings, create_app
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import JOB_TERMS, fake_leaves, final_commit, job_posting

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

CHAIN_ID = "node-test"
T0 = 1_700_000_000
KEYS = {name: key_from_seed(f"node/{name}") for name in ("alice", "solver", "v1", "v2", "bob")}
ALICE = KEYS["alice"]
GENESIS = {KEYS[n].address: 100_000 for n in KEYS}


def make_chain() -> Chain:
    return Chain.open(
        None, CHAIN_ID, "test", GENESIS, genesis_time=T0, clock=lambda: T0, check_invariants=True
    )


def dev_settings(**overrides: Any) -> NodeSettings:
    values: dict[str, Any] = {
        "db_url": "memory://",
        "chain_id": CHAIN_ID,
        "preset": "test",
        "block_time": 0,
        "dev": True,
    }
    values.update(overrides)
    return NodeSettings(**values)


@pytest.fixture
def chain() -> Chain:
    return make_chain()


@pytest.fixture
def api(chain: Chain) -> TestClient:
    return TestClient(create_app(dev_settings(), chain=chain))


class Signer:
    """Signs with each key's next nonce as the node reports it."""

    def __init__(self, api: TestClient) -> None:
        self.api = api

    def tx(self, key: PrivateKey, body: TxBody, **kw: Any) -> dict[str, Any]:
        nonce = kw.pop("nonce", None)
        if nonce is None:
            nonce = self.api.get(f"/accounts/{key.address}").json()["next_nonce"]
        chain_id = kw.pop("chain_id", CHAIN_ID)
        return sign_transaction(key, chain_id, nonce, body).to_json()

    def send(self, key: PrivateKey, body: TxBody) -> dict[str, Any]:
        response = self.api.post("/txs?wait=true", json=self.tx(key, body))
        assert response.status_code == 200, response.text
        receipt: dict[str, Any] = response.json()
        assert receipt["status"] == "applied", receipt
        return receipt


def error_of(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return response.status_code, body["error"]["code"]


# --- happy paths ----------------------------------------------------------------------------


def test_health_and_params(api: TestClient, chain: Chain) -> None:
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["chain_id"] == CHAIN_ID
    assert health["height"] == 0 and health["head_hash"] == chain.head.hash.hex()
    supply = api.get("/supply").json()
    assert supply["holds"] and supply["error"] is None
    assert supply["genesis"] == supply["issued"] == supply["balances"] == 5 * 100_000
    params = api.get("/params").json()
    assert params == {
        "chain_id": CHAIN_ID,
        "preset": "test",
        "params": chain.params.to_json(),
        "beacon_public_key": chain.beacon_public_key.hex(),
    }


def test_submit_then_produce_then_receipt(api: TestClient) -> None:
    tx = Signer(api).tx(ALICE, TransferBody(KEYS["bob"].address, Amount(7)))
    submitted = api.post("/txs", json=tx)
    assert submitted.status_code == 202
    tx_hash = submitted.json()["tx_hash"]
    assert submitted.json()["status"] == "pending"
    assert api.get(f"/txs/{tx_hash}").json()["status"] == "pending"
    assert api.get(f"/accounts/{ALICE.address}").json()["next_nonce"] == 1

    block = api.post("/dev/blocks")
    assert block.status_code == 201
    assert block.json()["tx_hashes"] == [tx_hash]
    receipt = api.get(f"/txs/{tx_hash}")
    assert receipt.status_code == 200 and receipt.json()["status"] == "applied"
    assert [e["kind"] for e in receipt.json()["events"]] == ["transfer"]
    again = api.post("/txs", json=tx)  # idempotent: the applied receipt
    assert again.status_code == 200 and again.json()["tx_hash"] == tx_hash
    assert api.get("/blocks/1").json() == block.json() == api.get("/blocks/head").json()
    producer = bytes.fromhex(api.get("/params").json()["beacon_public_key"])
    beacon = bytes.fromhex(block.json()["header"]["beacon"])
    assert verify_beacon(producer, CHAIN_ID, 1, beacon)  # anyone can check the randomness
    account = api.get(f"/accounts/{KEYS['bob'].address}").json()
    assert account["balance"] == 100_007 and account["address"] == KEYS["bob"].address


def test_wait_true_returns_the_receipt_of_the_block(api: TestClient) -> None:
    tx = Signer(api).tx(ALICE, StakeBody(Amount(50)))
    response = api.post("/txs", params={"wait": "true"}, json=tx)
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["status"] == "applied" and receipt["height"] == 1 and receipt["index"] == 0
    assert api.get(f"/accounts/{ALICE.address}").json()["bonded"] == 50


def test_a_job_lifecycle_through_the_api(api: TestClient) -> None:
    s = Signer(api)
    solver, v1, v2 = KEYS["solver"], KEYS["v1"], KEYS["v2"]
    s.send(solver, StakeBody(Amount(1_000)))
    s.send(v1, StakeBody(Amount(100)))
    s.send(v2, StakeBody(Amount(100)))

    posted = api.post("/jobs", json=s.tx(ALICE, job_posting()))
    assert posted.status_code == 201, posted.text
    job_id = posted.json()["job_id"]
    assert posted.json()["receipt"]["events"][0]["data"]["job_id"] == job_id
    assert [j["job_id"] for j in api.get("/jobs", params={"status": "open"}).json()] == [job_id]
    assert api.get("/jobs", params={"status": "settled"}).json() == []
    assert api.get("/jobs", params={"submitter": ALICE.address}).json()[0]["job_id"] == job_id

    s.send(solver, BidBody(job_id, Amount(800), 8))
    api.post("/dev/blocks", params={"count": JOB_TERMS["bid_blocks"] + 1})
    s.send(KEYS["bob"], CloseBiddingBody(job_id))
    tree = CommitmentTree(fake_leaves())
    s.send(solver, final_commit(job_id, tree))
    status, code = error_of(api.get(f"/samples/{job_id}/{v1.address}"))
    assert (status, code) == (409, "sample_seed_not_ready")
    api.post("/dev/blocks", params={"count": 2})

    sample = api.get(f"/samples/{job_id}/{v1.address}").json()
    assert sample["job_id"] == job_id and len(sample["segments"]) == JOB_TERMS["sample_count"]
    seed_block = api.get(f"/blocks/{sample['seed_height']}").json()
    assert sample["seed"] == sha256(bytes.fromhex(seed_block["header"]["beacon"])).hex()
    attested = s.send(v1, AttestBody(job_id))
    assert attested["events"][0]["data"]["sample"] == sample["segments"]
    challenged = s.send(v2, ChallengeBody(job_id, None))
    dispute_id = challenged["events"][0]["data"]["dispute_id"]

    dispute = api.get(f"/disputes/{dispute_id}").json()
    assert dispute["phase"] == "reveal_children" and dispute["turn"] == "solver"
    assert dispute["turn_address"] == solver.address and dispute["rounds"] == 1
    assert dispute["deadline"] >= api.get("/health").json()["height"]
    assert api.get("/disputes", params={"job_id": job_id}).json() == [dispute]

    detail = api.get(f"/jobs/{job_id}").json()
    assert detail["status"] == "committed" and detail["solver"] == solver.address
    assert detail["attesters"] == [v1.address] and detail["challengers"] == [v2.address]
    assert detail["final_root"] == tree.root().hex()
    assert detail["dispute_summaries"][0]["dispute_id"] == dispute_id
    assert detail["dispute_summaries"][0]["resolution"] == dispute["resolution"] == ""  # open
    kinds = [e["kind"] for e in detail["history"]]
    assert kinds == [
        "job_posted",
        "bid_placed",
        "job_assigned",
        "final_committed",
        "attested",
        "challenged",
    ]


def test_events_page_and_long_poll(api: TestClient, chain: Chain) -> None:
    api.post("/dev/blocks", params={"count": 2})
    page = api.get("/events", params={"since": 0, "limit": 2}).json()
    assert [e["id"] for e in page["events"]] == [1, 2] and page["last_id"] == 2
    rest = api.get("/events", params={"since": page["last_id"]}).json()
    assert [e["id"] for e in rest["events"]] == [3]
    empty = api.get("/events", params={"since": 3, "timeout": 0}).json()
    assert empty["events"] == [] and empty["last_id"] == 3

    timer = threading.Timer(0.2, chain.produce_block)
    timer.start()
    polled = api.get("/events", params={"since": 3, "timeout": 10}).json()
    timer.join()
    assert [e["kind"] for e in polled["events"]] == ["block"] and polled["height"] == 3


def test_the_background_producer_makes_blocks_and_wait_sees_them() -> None:
    chain = make_chain()
    settings = dev_settings(block_time=0.05, dev=False)
    with TestClient(create_app(settings, chain=chain)) as api:
        assert api.post("/dev/blocks").status_code == 404  # not a dev node
        tx = sign_transaction(ALICE, CHAIN_ID, 0, StakeBody(Amount(5))).to_json()
        receipt = api.post("/txs", params={"wait": "true", "timeout": 10}, json=tx).json()
        assert receipt["status"] == "applied"
        start = chain.height
        api.get("/events", params={"since": chain.last_event_id, "timeout": 10})
        assert chain.height > start


def test_wait_times_out_with_a_pending_receipt_when_no_block_comes() -> None:
    chain = make_chain()
    settings = dev_settings(block_time=3600, dev=False)  # no block during the test
    api = TestClient(create_app(settings, chain=chain))  # no lifespan: no producer at all
    tx = sign_transaction(ALICE, CHAIN_ID, 0, StakeBody(Amount(5))).to_json()
    response = api.post("/txs", params={"wait": "true", "timeout": 0.1}, json=tx)
    assert response.status_code == 202 and response.json()["status"] == "pending"


def test_openapi_lists_every_resource(api: TestClient) -> None:
    paths = set(api.get("/openapi.json").json()["paths"])
    assert {
        "/health",
        "/params",
        "/txs",
        "/txs/{tx_hash}",
        "/jobs",
        "/jobs/{job_id}",
        "/disputes",
        "/disputes/{dispute_id}",
        "/accounts/{address}",
        "/blocks/head",
        "/blocks/{height}",
        "/events",
        "/samples/{job_id}/{verifier}",
        "/supply",
        "/dev/blocks",
    } <= paths


# --- bad requests ---------------------------------------------------------------------------


def _valid(nonce: int = 0) -> dict[str, Any]:
    body = TransferBody(KEYS["bob"].address, Amount(1))
    return sign_transaction(ALICE, CHAIN_ID, nonce, body).to_json()


def _with(**changes: Any) -> dict[str, Any]:
    return {**_valid(), **changes}


def _flipped_signature() -> dict[str, Any]:
    tx = _valid()
    last = tx["signature"][-1]
    tx["signature"] = tx["signature"][:-1] + ("0" if last != "0" else "1")
    return tx


def _signed(
    kind: str | TxBody,
    body: dict[str, Any] | None = None,
    nonce: int = 0,
    chain_id: str = CHAIN_ID,
) -> dict[str, Any]:
    """ALICE's transaction of a typed body, or of a kind and a hand-made (malformed) body."""
    if isinstance(kind, TxBody):
        return sign_transaction(ALICE, chain_id, nonce, kind).to_json()
    return sign_transaction(ALICE, chain_id, nonce, kind, body or {}).to_json()


JSON = {"content-type": "application/json"}
HEX64 = "ab" * 32

# (method, path, kwargs, expected status, expected code)
BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/txs", {"content": b"{not json", "headers": JSON}, 400, "malformed_json"),
    ("POST", "/txs", {"content": b"\xff\xfe\x00garbage", "headers": JSON}, 400, "malformed_json"),
    (
        "POST",
        "/txs",
        {"content": b'{"nonce": ' + b"9" * 5000 + b"}", "headers": JSON},
        400,
        "malformed_json",
    ),
    (
        "POST",
        "/txs",
        {"content": b'{"body":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "headers": JSON},
        413,  # past 64 KiB only one big string is parsed: refused before the JSON parser
        "body_too_large",
    ),
    (
        "POST",
        "/txs",
        {"content": b"plain text", "headers": {"content-type": "text/plain"}},
        422,
        "validation_error",
    ),
    ("POST", "/txs", {"json": []}, 422, "validation_error"),
    ("POST", "/txs", {"json": None}, 422, "validation_error"),
    ("POST", "/txs", {"json": {"kind": "transfer"}}, 422, "validation_error"),
    ("POST", "/txs", {"json": _with(nonce="0")}, 422, "validation_error"),
    ("POST", "/txs", {"json": _with(nonce=1.0)}, 422, "validation_error"),
    ("POST", "/txs", {"json": _with(nonce=True)}, 422, "validation_error"),
    ("POST", "/txs", {"json": _with(body=[1, 2])}, 422, "validation_error"),
    ("POST", "/txs", {"json": {**_valid(), "extra": 1}}, 422, "validation_error"),
    ("POST", "/txs", {"json": _with(nonce=10**30)}, 400, "malformed_transaction"),
    ("POST", "/txs", {"json": _with(nonce=-1)}, 400, "malformed_transaction"),
    ("POST", "/txs", {"json": _with(public_key="zz" * 32)}, 400, "malformed_transaction"),
    ("POST", "/txs", {"json": _with(signature="AB" * 64)}, 400, "malformed_transaction"),
    ("POST", "/txs", {"json": _with(sender="0x1234")}, 400, "malformed_transaction"),
    ("POST", "/txs", {"json": _with(chain_id="")}, 400, "malformed_transaction"),
    ("POST", "/txs", {"json": _with(kind="x" * 100)}, 400, "malformed_transaction"),
    ("POST", "/txs", {"json": _flipped_signature()}, 401, "invalid_signature"),
    ("POST", "/txs", {"json": _with(sender=KEYS["bob"].address)}, 401, "sender_mismatch"),
    # a hand-made body: a kind that does not exist
    ("POST", "/txs", {"json": _signed("mint_everything", {})}, 400, "unknown_transaction_kind"),
    (
        "POST",
        "/txs",
        {"json": _signed(FaucetBody(Amount(1)), chain_id="other")},
        400,
        "wrong_chain_id",
    ),
    (
        "POST",
        "/txs",
        {"json": _signed("transfer", {"to": HEX64, "amount": 1})},  # a hand-made body: no address
        400,
        "malformed_body",
    ),
    (
        "POST",
        "/txs",
        {"json": _signed("transfer", {"to": ALICE.address, "amount": 1.5})},  # a hand-made body
        400,
        "malformed_body",
    ),
    (
        "POST",
        "/txs",
        {"json": _signed("transfer", {"to": ALICE.address, "amount": 10**40})},  # a hand-made body
        400,
        "malformed_body",
    ),
    (
        "POST",
        "/txs",
        {"json": _signed("transfer", {"to": ALICE.address, "amount": -3})},  # a hand-made body
        400,
        "malformed_body",
    ),
    # a hand-made body: an unknown field
    ("POST", "/txs", {"json": _signed("stake", {"amount": 1, "bonus": 2})}, 400, "malformed_body"),
    (
        "POST",
        "/txs",
        {
            "content": json.dumps(_valid()).replace('"amount": 1', '"amount": 1e400').encode(),
            "headers": JSON,
        },
        400,
        "malformed_transaction",
    ),
    (
        "POST",
        "/txs",
        {"json": _signed(TransferBody(ALICE.address, Amount(10**9)))},
        402,
        "insufficient_balance",
    ),
    ("POST", "/txs", {"json": _valid(nonce=5)}, 409, "nonce_too_high"),
    ("POST", "/txs", {"json": _signed(SettleBody(HEX64))}, 404, "job_not_found"),
    (  # a hand-made body: the dispute id is no identifier
        "POST",
        "/txs",
        {"json": _signed("reveal_children", {"dispute_id": "zz", "left": HEX64, "right": HEX64})},
        400,
        "malformed_body",
    ),
    ("POST", "/txs?wait=maybe", {"json": _valid()}, 422, "validation_error"),
    ("POST", "/txs?timeout=-1", {"json": _valid()}, 422, "validation_error"),
    ("POST", "/jobs", {"json": _valid()}, 400, "wrong_transaction_kind"),
    (
        "POST",
        "/jobs",
        {"json": _signed("post_job", {"spec": {"steps": 1}, **JOB_TERMS})},  # a hand-made body
        400,
        "invalid_spec",
    ),
    (
        "POST",
        "/jobs",
        {"json": _signed("post_job", {"spec": tiny_spec_dict()})},  # a hand-made body: no terms
        400,
        "malformed_body",
    ),
    ("GET", "/txs/xyz", {}, 400, "invalid_identifier"),
    ("GET", f"/txs/{HEX64}", {}, 404, "tx_not_found"),
    ("GET", "/accounts/alice", {}, 400, "invalid_identifier"),
    ("GET", "/accounts/0x" + "G" * 40, {}, 400, "invalid_identifier"),
    ("GET", "/jobs/not-a-job", {}, 400, "invalid_identifier"),
    ("GET", f"/jobs/{HEX64}", {}, 404, "job_not_found"),
    ("GET", f"/jobs/0x{HEX64.upper()}", {}, 404, "job_not_found"),
    ("GET", "/jobs?status=bogus", {}, 422, "validation_error"),
    ("GET", "/jobs?limit=0", {}, 422, "validation_error"),
    ("GET", "/jobs?submitter=nobody", {}, 400, "invalid_identifier"),
    ("GET", f"/disputes/{HEX64}", {}, 404, "dispute_not_found"),
    ("GET", "/disputes?job_id=1", {}, 400, "invalid_identifier"),
    ("GET", "/blocks/99", {}, 404, "block_not_found"),
    ("GET", f"/blocks/{10**30}", {}, 404, "block_not_found"),
    ("GET", "/blocks/-1", {}, 422, "validation_error"),
    ("GET", "/blocks/abc", {}, 422, "validation_error"),
    ("GET", "/events?since=-1", {}, 422, "validation_error"),
    ("GET", "/events?timeout=1000", {}, 422, "validation_error"),
    ("GET", "/events?limit=100000", {}, 422, "validation_error"),
    ("GET", f"/samples/{HEX64}/{ALICE.address}", {}, 404, "job_not_found"),
    ("GET", f"/samples/{HEX64}/nobody", {}, 400, "invalid_identifier"),
    ("POST", "/dev/blocks?count=0", {}, 422, "validation_error"),
    ("GET", "/nowhere", {}, 404, "not_found"),
    ("DELETE", "/txs", {}, 405, "method_not_allowed"),
    ("PUT", "/jobs", {"json": {}}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    "method, path, kwargs, status, code",
    BAD_REQUESTS,
    ids=[f"{m} {p[:40]} -> {c}" for m, p, _, _, c in BAD_REQUESTS],
)
def test_bad_requests_get_a_json_4xx_and_change_nothing(
    api: TestClient,
    chain: Chain,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    root, head, events = chain.state.state_root(), chain.head, chain.last_event_id
    response = api.request(method, path, **kwargs)
    assert error_of(response) == (status, code), response.text
    assert chain.state.state_root() == root and chain.head == head
    assert chain.pending_hashes() == [] and chain.last_event_id == events


def test_a_body_over_the_limit_is_refused_with_413(chain: Chain) -> None:
    api = TestClient(create_app(dev_settings(max_body_bytes=4096), chain=chain))
    # a hand-made body: padded with an unknown field
    big = {**_valid(), "body": {"to": ALICE.address, "amount": 1, "pad": "x" * 10_000}}
    assert error_of(api.post("/txs", json=big)) == (413, "body_too_large")

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted while it arrives
        yield json.dumps(big).encode()

    assert error_of(api.post("/txs", content=streamed(), headers=JSON)) == (413, "body_too_large")


def test_a_replayed_nonce_is_409(api: TestClient) -> None:
    Signer(api).send(ALICE, StakeBody(Amount(1)))
    stale = _signed(StakeBody(Amount(2)), nonce=0)
    assert error_of(api.post("/txs", json=stale)) == (409, "nonce_too_low")

"""oversized-request: one signed request that costs the node far more than it costs to send.

Before admission, a 140 MB ``post_prestate`` for a dispute that does not exist was parsed,
copied, hashed and signature-checked under the chain's lock before the ledger said "no such
dispute". Now the node reads no body over its cap (2 x max_blob_bytes + 64 KiB, from the chain's
params), refuses a transaction larger than its kind allows, and checks a pre-state's dispute
and blob size against the head state before anything is hashed, verified or locked.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

import contracts_sim.fork
from contracts_sim.chain import Chain
from contracts_sim.crypto import key_from_seed, verify_signature
from contracts_sim.transactions import (
    MAX_SMALL_TRANSACTION_BYTES,
    max_request_bytes,
    max_transaction_bytes,
    sign_transaction,
)
from services.node import NodeSettings, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.adversarial

CHAIN_ID = "oversized-test"
T0 = 1_700_000_000
ATTACKER = key_from_seed("oversized/attacker")
NO_DISPUTE = "ab" * 32


class CountingLock:
    """The chain's lock, counting how often it is taken."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.taken = 0

    def __enter__(self) -> Any:
        self.taken += 1
        return self.inner.__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self.inner.__exit__(*exc)


@pytest.fixture
def chain() -> Chain:
    return Chain.open(
        None, CHAIN_ID, "test", {ATTACKER.address: 10**6}, genesis_time=T0, clock=lambda: T0
    )


@pytest.fixture
def api(chain: Chain) -> TestClient:
    settings = NodeSettings(
        db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
    )
    return TestClient(create_app(settings, chain=chain))


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts signature verifications by the rules."""
    calls: list[int] = []
    real = verify_signature  # what contracts_sim.fork calls until the test replaces it

    def counting(public_key: bytes, message: bytes, signature: bytes) -> bool:
        calls.append(len(message))
        return real(public_key, message, signature)

    monkeypatch.setattr(contracts_sim.fork, "verify_signature", counting)
    return calls


def _signed(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return sign_transaction(ATTACKER, CHAIN_ID, 0, kind, body).to_json()


def _error(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"]


def test_a_prestate_for_no_dispute_is_refused_before_verifying_or_locking(
    chain: Chain, api: TestClient, verified: list[int]
) -> None:
    lock = CountingLock(chain._lock)
    chain._lock = lock  # type: ignore[assignment]
    over_the_limit = bytes(chain.params.max_blob_bytes + 1).hex()
    tx = _signed("post_prestate", {"dispute_id": NO_DISPUTE, "blob": over_the_limit})
    assert _error(api.post("/txs", json=tx)) == (404, "dispute_not_found")
    assert verified == [] and lock.taken == 0
    assert chain.pending_hashes() == [] and chain.next_nonce(ATTACKER.address) == 0


def test_a_request_declaring_a_body_over_the_cap_is_refused_before_it_is_read(
    chain: Chain, api: TestClient
) -> None:
    cap = max_request_bytes(chain.params.max_blob_bytes)
    # The largest kind: post_pieces, chunks of up to max_blob_bytes as hex with their paths.
    assert cap == 4 * chain.params.max_blob_bytes + 64 * 1024
    reads: list[object] = []
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        reads.append(object())
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/txs",
        "raw_path": b"/txs",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(cap + 1).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def call() -> None:
        await api.app(scope, receive, send)

    asyncio.run(call())
    assert reads == []
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "body_too_large"


def test_a_blob_over_the_cap_is_refused_with_413_declared_or_streamed(
    chain: Chain, api: TestClient, verified: list[int]
) -> None:
    # Past the node's body cap (the largest kind's limit, post_pieces: 4 x max_blob_bytes).
    blob = bytes(4 * chain.params.max_blob_bytes).hex()
    tx = _signed("post_prestate", {"dispute_id": NO_DISPUTE, "blob": blob})
    assert _error(api.post("/txs", json=tx)) == (413, "body_too_large")

    def streamed() -> Iterator[bytes]:  # no Content-Length: the read stops at the cap
        encoded = json.dumps(tx).encode()
        for start in range(0, len(encoded), 1 << 16):
            yield encoded[start : start + (1 << 16)]

    headers = {"content-type": "application/json"}
    assert _error(api.post("/txs", content=streamed(), headers=headers)) == (
        413,
        "body_too_large",
    )
    assert verified == []


def test_a_small_kind_padded_past_its_limit_is_refused_before_verifying(
    api: TestClient, verified: list[int]
) -> None:
    padded = _signed("transfer", {"to": ATTACKER.address, "amount": 1})
    encoded = json.dumps(padded)
    filler = " " * (MAX_SMALL_TRANSACTION_BYTES + 1 - len(encoded))
    content = (encoded[:-1] + filler + "}").encode()
    response = api.post("/txs", content=content, headers={"content-type": "application/json"})
    assert _error(response) == (413, "transaction_too_large")
    assert verified == []


def test_a_large_body_of_tiny_values_is_refused_before_it_is_parsed(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body under the cap made of many tiny JSON values costs far more memory to parse than
    its size; past the small-transaction size only a post_prestate (one hex string) fits."""
    parsed: list[int] = []
    real_loads = json.loads

    def counting_loads(data: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(len(data))
        return real_loads(data, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting_loads)
    values = "[" + ",".join("0" for _ in range(MAX_SMALL_TRANSACTION_BYTES)) + "]"
    content = ('{"chain_id": "x", "body": {"blob": ' + values + "}}").encode()
    response = api.post("/txs", content=content, headers={"content-type": "application/json"})
    assert _error(response)[0] == 413
    assert not [size for size in parsed if size >= MAX_SMALL_TRANSACTION_BYTES]


def test_requests_just_under_the_caps_are_admitted(chain: Chain, api: TestClient) -> None:
    cap = max_transaction_bytes("post_prestate", chain.params.max_blob_bytes)
    largest_blob = bytes(chain.params.max_blob_bytes).hex()
    body = json.dumps(_signed("post_prestate", {"dispute_id": NO_DISPUTE, "blob": largest_blob}))
    body = body[:-1] + " " * (cap - len(body)) + "}"
    assert len(body) == cap
    headers = {"content-type": "application/json"}
    response = api.post("/txs", content=body.encode(), headers=headers)
    assert _error(response) == (404, "dispute_not_found")  # past every size check

    small = json.dumps(_signed("transfer", {"to": ATTACKER.address, "amount": 1}))
    small = small[:-1] + " " * (MAX_SMALL_TRANSACTION_BYTES - len(small)) + "}"
    response = api.post("/txs?wait=true", content=small.encode(), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "applied"

"""HTTP ingest: POST /txs/batch (per item, not all or nothing), size admission before the body
is parsed, and the signature checked before the chain's lock is taken."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import services.node.runtime
from contracts_sim.chain import Chain, EnvelopeChecker
from contracts_sim.crypto import key_from_seed
from contracts_sim.exceptions import TransactionTooLargeError
from contracts_sim.transactions import (
    MAX_SMALL_TRANSACTION_BYTES,
    ChunkPiece,
    InputPiece,
    PostPiecesBody,
    TransferBody,
    sign_transaction,
)
from protocol.types import Amount
from services.node import NodeSettings, create_app
from services.node.errors import MAX_BATCH_BYTES, batch_structure
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import job_posting, post_job_body

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

CHAIN_ID = "ingest-node-test"
T0 = 1_700_000_000
KEYS = [key_from_seed(f"ingest-node/{i}") for i in range(3)]
GENESIS = {key.address: 10_000 for key in KEYS}
JSON = {"content-type": "application/json"}


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


@pytest.fixture(scope="module")
def checker() -> Iterator[EnvelopeChecker]:
    pool = EnvelopeChecker(workers=2, min_parallel=1)
    yield pool
    pool.close()


@pytest.fixture
def chain(checker: EnvelopeChecker) -> Chain:
    chain = Chain.open(None, CHAIN_ID, "test", GENESIS, genesis_time=T0, clock=lambda: T0)
    chain.checker = checker
    return chain


@pytest.fixture
def api(chain: Chain) -> TestClient:
    settings = NodeSettings(
        db_url="memory://",
        chain_id=CHAIN_ID,
        preset="test",
        block_time=0,
        dev=True,
        max_batch_txs=20,
    )
    return TestClient(create_app(settings, chain=chain))


def _transfer(sender: int, nonce: int, amount: int = 1) -> dict[str, Any]:
    body = TransferBody(KEYS[(sender + 1) % len(KEYS)].address, Amount(amount))
    return sign_transaction(KEYS[sender], CHAIN_ID, nonce, body).to_json()


def _bad_signature(tx: dict[str, Any]) -> dict[str, Any]:
    flipped = bytearray(bytes.fromhex(tx["signature"]))
    flipped[0] ^= 1
    return {**tx, "signature": flipped.hex()}


def _error(response: Any) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"]


def test_a_batch_of_good_transactions_is_accepted_in_order(api: TestClient, chain: Chain) -> None:
    batch = [_transfer(0, nonce) for nonce in range(5)] + [_transfer(1, 0)]
    response = api.post("/txs/batch", json={"txs": batch})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["refused"]) == (6, 0)
    hashes = [item["tx_hash"] for item in result["results"]]
    assert hashes == chain.pending_hashes()
    assert api.get(f"/txs/{hashes[0]}").json()["status"] == "pending"
    api.post("/dev/blocks")
    assert all(api.get(f"/txs/{h}").json()["status"] == "applied" for h in hashes)
    again = api.post("/txs/batch", json={"txs": batch[:2]}).json()  # idempotent
    assert [item["tx_hash"] for item in again["results"]] == hashes[:2]


def test_a_bad_item_is_refused_alone_and_changes_nothing(api: TestClient, chain: Chain) -> None:
    batch = [
        _transfer(0, 0),
        _bad_signature(_transfer(0, 1)),
        "not an envelope",
        _transfer(0, 1),
        _transfer(1, 3),  # a nonce gap
        _transfer(2, 0, amount=10**9),  # more than the balance
        _transfer(1, 0),
    ]
    response = api.post("/txs/batch", json={"txs": batch})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["accepted"], result["refused"]) == (3, 4)
    codes = [item.get("error", {}).get("code") for item in result["results"]]
    assert codes == [
        None,
        "invalid_signature",
        "malformed_transaction",
        None,
        "nonce_too_high",
        "insufficient_balance",
        None,
    ]
    accepted = [item["tx_hash"] for item in result["results"] if "tx_hash" in item]
    assert chain.pending_hashes() == accepted
    assert [chain.next_nonce(key.address) for key in KEYS] == [2, 1, 0]
    metrics = api.get("/metrics").text
    counted = "proofnet_transactions_submitted_total{code=%s,kind=%s,result=%s} %s"
    assert counted % ('""', '"transfer"', '"accepted"', "3.0") in metrics
    assert counted % ('"invalid_signature"', '"transfer"', '"rejected"', "1.0") in metrics
    assert counted % ('"malformed_transaction"', '"unknown"', '"rejected"', "1.0") in metrics


@pytest.mark.parametrize(
    "content, status, code",
    [
        (b"{not json", 400, "malformed_json"),
        (b"[]", 422, "validation_error"),
        (b'{"txs": 5}', 422, "validation_error"),
        (b'{"txs": [], "more": 1}', 422, "validation_error"),
        (json.dumps({"txs": [{}] * 21}).encode(), 413, "batch_too_large"),
        (b'{"txs": ["' + b"0" * MAX_BATCH_BYTES + b'"]}', 413, "body_too_large"),
    ],
    ids=["not-json", "a-list", "txs-not-a-list", "extra-key", "too-many", "too-big"],
)
def test_a_bad_batch_is_refused_whole_with_a_json_4xx(
    api: TestClient, chain: Chain, content: bytes, status: int, code: str
) -> None:
    assert _error(api.post("/txs/batch", content=content, headers=JSON)) == (status, code)
    assert chain.pending_hashes() == []


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the bodies the node parsed (``runtime._parse``)."""
    sizes: list[int] = []
    real = services.node.runtime._parse

    def counting(model: Any, encoded: bytes) -> Any:
        sizes.append(len(encoded))
        return real(model, encoded)

    monkeypatch.setattr(services.node.runtime, "_parse", counting)
    return sizes


@pytest.mark.parametrize("item", [b"[]", b"{}", b'{"a":' * 150 + b"1" + b"}" * 150])
def test_a_batch_of_many_tiny_values_is_refused_before_it_is_parsed(
    api: TestClient, chain: Chain, parsed: list[int], item: bytes
) -> None:
    """Parsing a batch of tiny values costs tens of times its size in memory, with the GIL
    held (the node froze): its JSON separators are counted first."""
    count = 4 * batch_structure(300_000, 20) // (item.count(b"{") + item.count(b"[") + 1)
    content = b'{"txs": [' + b",".join([item] * count) + b"]}"
    assert len(content) < MAX_BATCH_BYTES
    assert _error(api.post("/txs/batch", content=content, headers=JSON)) == (
        413,
        "batch_too_complex",
    )
    assert parsed == [] and chain.pending_hashes() == []
    real = [_transfer(0, nonce) for nonce in range(20)]  # as many as the node takes
    response = api.post("/txs/batch", json={"txs": real})
    assert response.status_code == 200 and response.json()["accepted"] == 20


def test_at_most_two_batches_are_parsed_at_once(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parse holds the GIL: more batches parsed at once only add memory. Further batches
    wait on the runtime's limiter, without a thread, until a parse ends."""
    parsing, most, lock = [0], [0], threading.Lock()
    release = threading.Event()
    real = services.node.runtime._parse

    def held(model: Any, encoded: bytes) -> Any:
        with lock:
            parsing[0] += 1
            most[0] = max(most[0], parsing[0])
        release.wait(30)
        with lock:
            parsing[0] -= 1
        return real(model, encoded)

    monkeypatch.setattr(services.node.runtime, "_parse", held)
    settings = NodeSettings(
        db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
    )
    app = create_app(settings, chain=chain)
    limiter = app.state.runtime._batch_parses
    answers: list[int] = []
    with TestClient(app) as api:
        posts = [
            threading.Thread(
                target=lambda n=n: answers.append(
                    api.post("/txs/batch", json={"txs": [_transfer(n, 0)]}).status_code
                )
            )
            for n in range(3)
        ] + [
            threading.Thread(
                target=lambda: answers.append(
                    api.post("/txs/batch", json={"txs": [_transfer(0, 1)]}).status_code
                )
            )
        ]
        for post in posts:
            post.start()
        for _ in range(3000):  # until two parse and two wait (a hang guard, not a timing)
            if limiter.statistics().tasks_waiting == 2 and parsing[0] == 2:
                break
            threading.Event().wait(0.01)
        assert (parsing[0], limiter.statistics().tasks_waiting) == (2, 2)
        release.set()
        for post in posts:
            post.join(30)
    assert most[0] == 2 and answers == [200] * 4


def test_a_batch_is_held_to_the_operators_body_limit(chain: Chain) -> None:
    settings = NodeSettings(
        db_url="memory://",
        chain_id=CHAIN_ID,
        preset="test",
        block_time=0,
        dev=True,
        max_body_bytes=4096,
    )
    api = TestClient(create_app(settings, chain=chain))
    padded = b'{"txs": [' + json.dumps(_transfer(0, 0)).encode() + b"]" + b" " * 4096 + b"}"
    assert _error(api.post("/txs/batch", content=padded, headers=JSON)) == (
        413,
        "body_too_large",
    )
    assert chain.pending_hashes() == []
    assert api.post("/txs/batch", json={"txs": [_transfer(0, 0)]}).status_code == 200


def test_a_batch_item_larger_than_its_kind_allows_is_refused_alone(
    api: TestClient, chain: Chain
) -> None:
    """The per-kind size limit of ``POST /txs`` holds for each batch item too: a post_job
    padded past 64 KiB (a spec's ignored description) is refused, not sealed."""
    spec = dict(tiny_spec_dict(), description="x" * MAX_SMALL_TRANSACTION_BYTES)
    # a hand-made body: the spec's ignored description pads it (a parsed JobSpec drops it)
    big = sign_transaction(KEYS[0], CHAIN_ID, 0, "post_job", post_job_body(spec=spec))
    assert _error(api.post("/txs", json=big.to_json())) == (413, "transaction_too_large")
    response = api.post("/txs/batch", json={"txs": [big.to_json(), _transfer(1, 0)]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["error"]["code"] == "transaction_too_large"
    assert chain.pending_hashes() == [results[1]["tx_hash"]]
    with pytest.raises(TransactionTooLargeError):
        chain.submit(big)  # in process too
    assert [type(r) for r in chain.submit_many([big] * 20)] == [TransactionTooLargeError] * 20


def test_post_jobs_refuses_an_oversized_job_before_parsing_it(
    api: TestClient, parsed: list[int]
) -> None:
    """POST /jobs reads its body as POST /txs does: a post_job past its kind's limit is
    refused by size (413) without being parsed, even when it would not parse at all."""
    tx = sign_transaction(KEYS[0], CHAIN_ID, 0, job_posting()).to_json()
    encoded = json.dumps(tx).encode()
    unparsable = encoded[:-1] + b" " * MAX_SMALL_TRANSACTION_BYTES + b"{not json"
    assert _error(api.post("/jobs", content=unparsable, headers=JSON)) == (
        413,
        "transaction_too_large",
    )
    assert parsed == []
    response = api.post("/jobs", content=encoded, headers=JSON)
    assert response.status_code in (201, 202), response.text
    assert parsed == [len(encoded)]


def test_a_small_kind_padded_past_its_limit_is_refused_before_it_is_parsed(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []
    real = services.node.runtime._parse

    def counting(model: Any, encoded: bytes) -> Any:
        parsed.append(len(encoded))
        return real(model, encoded)

    monkeypatch.setattr(services.node.runtime, "_parse", counting)
    encoded = json.dumps(_transfer(0, 0))
    padded = encoded[:-1] + " " * (MAX_SMALL_TRANSACTION_BYTES + 1 - len(encoded)) + "}"
    response = api.post("/txs", content=padded.encode(), headers=JSON)
    assert _error(response) == (413, "transaction_too_large")
    assert parsed == []
    named_last = '{"body": {"blob": "' + "00" * MAX_SMALL_TRANSACTION_BYTES + '"}, "kind": "bid"}'
    response = api.post("/txs", content=named_last.encode(), headers=JSON)
    assert _error(response) == (413, "transaction_too_large")  # the last top-level kind
    assert parsed == []
    assert api.post("/txs", json=_transfer(0, 0)).status_code == 202
    assert len(parsed) == 1


def test_a_large_body_of_many_chunks_passes_admission_by_size(api: TestClient) -> None:
    """A ``post_pieces`` carries many chunks, each with its Merkle path: past 64 KiB it has
    hundreds of separators and strings, few for its size; admission lets it reach the rules."""
    chunk = ChunkPiece(3, b"\xab" * 4096, (b"\xcd" * 32,) * 12)
    body = PostPiecesBody("ef" * 32, (InputPiece(None, None, (chunk,) * 100),))
    tx = sign_transaction(KEYS[0], CHAIN_ID, 0, body).to_json()
    encoded = json.dumps(tx).encode()
    assert len(encoded) > 8 * MAX_SMALL_TRANSACTION_BYTES // 2
    assert encoded.count(b",") > 256 and encoded.count(b'"') // 2 > 1024
    status, code = _error(api.post("/txs", content=encoded, headers=JSON))
    assert status != 413, code  # past every size check: the rules answer


def test_a_bad_signature_is_refused_before_the_lock_is_taken(api: TestClient, chain: Chain) -> None:
    lock = CountingLock(chain._lock)
    chain._lock = lock  # type: ignore[assignment]
    assert _error(api.post("/txs", json=_bad_signature(_transfer(0, 0)))) == (
        401,
        "invalid_signature",
    )
    assert lock.taken == 0
    assert api.post("/txs", json=_transfer(0, 0)).status_code == 202
    assert lock.taken > 0


def test_the_batch_route_is_documented_with_its_errors(api: TestClient) -> None:
    operation = api.get("/openapi.json").json()["paths"]["/txs/batch"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["txs"]["items"] == {"$ref": "#/components/schemas/TxEnvelope"}
    assert {"400", "413", "422"} <= set(operation["responses"])
    assert "not all or nothing" in operation["description"]

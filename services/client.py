"""One client interface for agents and tests, two backends.

    ChainClient (Protocol)
    ├── HttpChainClient(base_url, transport=None)   a node over HTTP (httpx)
    └── LocalChainClient(chain)                    a ``Chain`` in the same process

Both return the same values: ``Receipt``, ``Block`` and ``ChainEvent`` objects
(``contracts_sim.blocks``) for chain data, and for ledger records the node's JSON views
(``services.node.views``: plain dicts, e.g. ``get_job(id)["status"]``). Both raise one error:

    ProofNetError
    └── ClientError(code, message, status)   the node's {"error": {"code", "message"}};
                                             status is the HTTP status (0: no response)

so ``except ClientError as e: if e.code == "nonce_too_low": ...`` works against either backend.

``Wallet`` signs for one key and tracks its nonce locally, re-reading it from the chain after a
nonce error.

Waiting: ``submit(tx, wait=True)`` returns once the transaction is in a block. A node produces
blocks on its own timer (or, in dev mode without a timer, at once); ``LocalChainClient`` has a
virtual clock, so with ``automine`` (the default) it produces the block itself.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

import httpx

from contracts_sim.blocks import (
    Block,
    BlockHeader,
    ChainEvent,
    Receipt,
    check_producer_signature,
)
from contracts_sim.chain import Chain
from contracts_sim.crypto import PrivateKey
from contracts_sim.exceptions import StateProofError
from contracts_sim.jobs import compute_job_id
from contracts_sim.records import JobStatus
from contracts_sim.state import ACCOUNTS, DISPUTES, JOBS
from contracts_sim.state_tree import StateProof, verify_proof
from contracts_sim.transactions import (
    PostJobBody,
    Transaction,
    TxBody,
    parse_body,
    sign_transaction,
)
from protocol.errors import ProofNetError
from protocol.types import Address
from services.errors import ClientError
from services.node import views
from services.node.views import MAX_JOB_IDS

__all__ = [
    "ChainClient",
    "ChainHead",
    "ClientError",
    "HttpChainClient",
    "JobSubmission",
    "JsonObject",
    "LocalChainClient",
    "TxLike",
    "Wallet",
]

JsonObject = dict[str, Any]
T = TypeVar("T")
NONCE_ERROR_CODES: Final = frozenset({"nonce_too_low", "nonce_too_high", "nonce_mismatch"})
DEFAULT_TIMEOUT: Final = 30.0
_NOT_A_ROUTE: Final = frozenset({404, 405})  # what a server without the node's routes says


@dataclass(frozen=True)
class JobSubmission:
    job_id: str
    receipt: Receipt


TxLike = Transaction | Mapping[str, Any]


@dataclass(frozen=True)
class ChainHead:
    """The head block's height and the id of the last event: where an event cursor starts."""

    height: int
    last_event_id: int


def _tx_json(tx: TxLike) -> dict[str, Any]:
    return tx.to_json() if isinstance(tx, Transaction) else dict(tx)


@runtime_checkable
class ChainClient(Protocol):
    """What an agent needs from a chain."""

    def chain_id(self) -> str: ...
    def params(self) -> JsonObject: ...
    def head_height(self) -> int: ...
    def chain_head(self) -> ChainHead: ...
    def submit(self, tx: TxLike, wait: bool = False) -> Receipt: ...
    def post_job(self, tx: TxLike, wait: bool = True) -> JobSubmission: ...
    def receipt(self, tx_hash: str) -> Receipt: ...
    def get_account(self, address: str) -> JsonObject: ...
    def pending_nonce(self, address: str) -> int: ...
    def get_job(self, job_id: str) -> JsonObject: ...
    def list_jobs(
        self,
        status: str | None = None,
        submitter: str | None = None,
        solver: str | None = None,
        job_ids: Sequence[str] | None = None,
    ) -> list[JsonObject]: ...
    def get_dispute(self, dispute_id: str) -> JsonObject: ...
    def list_disputes(self, job_id: str | None = None) -> list[JsonObject]: ...
    def get_block(self, height: int) -> Block: ...
    def head_block(self) -> Block: ...
    def events_since(
        self, since: int, limit: int = 100, timeout: float = 0.0
    ) -> list[ChainEvent]: ...
    def sample(self, job_id: str, verifier: str) -> list[int]: ...
    def produce_block(self) -> Block: ...
    def supply(self) -> JsonObject: ...


# --- in-process -----------------------------------------------------------------------------


class LocalChainClient:
    """``ChainClient`` over a ``Chain`` in this process (no HTTP, no serialisation).

    With ``automine`` (default), ``submit(tx, wait=True)`` and ``post_job`` seal a block at once:
    the chain's height is a virtual clock that only this process moves.
    """

    def __init__(self, chain: Chain, *, automine: bool = True) -> None:
        self.chain = chain
        self.automine = automine

    @staticmethod
    def _call(fn: Callable[[], T]) -> T:
        """Run ``fn``, turning the chain's errors into the ClientError the node would send."""
        try:
            return fn()
        except ClientError:
            raise
        except ProofNetError as exc:
            raise ClientError(exc.code, exc.message, exc.http_status) from exc

    def chain_id(self) -> str:
        return self.chain.chain_id

    def params(self) -> JsonObject:
        return self.chain.params.to_json()

    def head_height(self) -> int:
        return int(self.chain.height)

    def chain_head(self) -> ChainHead:
        return ChainHead(int(self.chain.height), int(self.chain.last_event_id))

    def submit(self, tx: TxLike, wait: bool = False) -> Receipt:
        tx_hash = self._call(lambda: self.chain.submit(tx))
        receipt = self._call(lambda: self.chain.receipt(tx_hash))
        if wait and receipt.status == "pending":
            if not self.automine:
                raise ClientError(
                    "no_block_producer", "wait=True needs automine on a local chain", 400
                )
            self.produce_block()
            receipt = self._call(lambda: self.chain.receipt(tx_hash))
        return receipt

    def post_job(self, tx: TxLike, wait: bool = True) -> JobSubmission:
        job_id = self._call(lambda: _job_id_of(tx))
        return JobSubmission(job_id, self.submit(tx, wait))

    def receipt(self, tx_hash: str) -> Receipt:
        return self._call(lambda: self.chain.receipt(views.parse_id(tx_hash, "transaction hash")))

    def get_account(self, address: str) -> JsonObject:
        return self._call(lambda: views.account_view(self.chain, views.parse_address(address)))

    def pending_nonce(self, address: str) -> int:
        return self._call(lambda: self.chain.next_nonce(views.parse_address(address)))

    def get_job(self, job_id: str) -> JsonObject:
        return self._call(
            lambda: views.job_detail_view(self.chain, views.parse_id(job_id, "job id"))
        )

    def list_jobs(
        self,
        status: str | None = None,
        submitter: str | None = None,
        solver: str | None = None,
        job_ids: Sequence[str] | None = None,
    ) -> list[JsonObject]:
        def run() -> list[JsonObject]:
            if status is not None and status not in {s.value for s in JobStatus}:
                raise ClientError("validation_error", f"status: unknown job status {status!r}", 422)
            jobs = self.chain.list_jobs(
                status=status,
                submitter=None if submitter is None else views.parse_address(submitter),
                solver=None if solver is None else views.parse_address(solver),
                job_ids=None if job_ids is None else {views.parse_id(j, "job id") for j in job_ids},
            )
            return [views.job_view(job) for job in jobs]

        return self._call(run)

    def get_dispute(self, dispute_id: str) -> JsonObject:
        def run() -> JsonObject:
            dispute = self.chain.get_dispute(views.parse_id(dispute_id, "dispute id"))
            return views.dispute_view(self.chain, dispute)

        return self._call(run)

    def list_disputes(self, job_id: str | None = None) -> list[JsonObject]:
        def run() -> list[JsonObject]:
            wanted = None if job_id is None else views.parse_id(job_id, "job id")
            return [
                views.dispute_view(self.chain, d) for d in self.chain.list_disputes(job_id=wanted)
            ]

        return self._call(run)

    def get_block(self, height: int) -> Block:
        return self._call(lambda: self.chain.get_block(height))

    def head_block(self) -> Block:
        return self._call(self.chain.head_block)

    def events_since(self, since: int, limit: int = 100, timeout: float = 0.0) -> list[ChainEvent]:
        return self.chain.wait_for_events(since, limit, timeout)

    def sample(self, job_id: str, verifier: str) -> list[int]:
        def run() -> list[int]:
            found = self.chain.sample(
                views.parse_id(job_id, "job id"), views.parse_address(verifier)
            )
            return list(found.segments)

        return self._call(run)

    def produce_block(self) -> Block:
        return self._call(self.chain.produce_block)

    def supply(self) -> JsonObject:
        return views.supply_view(self.chain)


PROOF_TABLES: Final = {"accounts": ACCOUNTS, "jobs": JOBS, "disputes": DISPUTES}
"""``/proofs/{kind}/…`` → the state table it proves a row of."""
PROVEN_ROW_KEYS: Final = frozenset({"table", "key", "record", "height", "state_root", "proof"})


def _verified_row(answer: dict[str, Any], table: str, key: str, header: BlockHeader) -> Any:
    """The record in a node's proof answer, once it is shown to be the row ``(table, key)``
    under ``header.state_root``; StateProofError otherwise."""
    if set(answer) != PROVEN_ROW_KEYS:
        raise StateProofError(f"a proof answer has exactly the keys {sorted(PROVEN_ROW_KEYS)}")
    if answer["table"] != table or answer["key"] != key:
        raise StateProofError(f"the answer proves {answer['table']}/{answer['key']}, not {key}")
    if answer["height"] != header.height or answer["state_root"] != header.state_root.hex():
        raise StateProofError(
            f"the proof is against block {answer['height']}, not the header's {header.height}"
        )
    record = answer["record"]
    if record is not None and not isinstance(record, dict):
        raise StateProofError("a proven record is an object or null")
    verify_proof(header.state_root, table, key, record, StateProof.from_json(answer["proof"]))
    return record


def _job_id_of(tx: TxLike) -> str:
    parsed = tx if isinstance(tx, Transaction) else Transaction.from_json(tx)
    if parsed.kind != PostJobBody.kind:
        raise ClientError(
            "wrong_transaction_kind",
            f"post_job takes a 'post_job' transaction, not {parsed.kind!r}",
            400,
        )
    body: PostJobBody = parse_body(parsed.kind, parsed.body)
    return compute_job_id(body.spec, parsed.sender, parsed.nonce)


# --- over HTTP ------------------------------------------------------------------------------


class HttpChainClient:
    """``ChainClient`` against a node's REST API.

    ``transport`` is any httpx transport (``httpx.MockTransport``, or a live one with retries);
    ``http`` an already configured ``httpx.Client`` (e.g. Starlette's ``TestClient`` around an
    app) — then ``base_url`` and ``transport`` are ignored.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8545",
        transport: httpx.BaseTransport | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        self._owns_http = http is None
        self.http = http or httpx.Client(base_url=base_url, transport=transport, timeout=timeout)
        self.timeout = timeout
        self._chain_id: str | None = None
        # Learnt on the first "no such route" answer: None (not yet), "" (a chain node), or
        # why the server is not one.
        self._not_a_chain_node: str | None = None

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> HttpChainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            return self._answer(method, path, params=params, json=json, timeout=timeout)
        except ClientError as exc:
            if exc.status in _NOT_A_ROUTE or exc.code == "bad_response":
                self._refuse_if_not_a_chain_node()
            raise

    def _answer(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """The JSON the node answers, or the ClientError it means."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        options: dict[str, Any] = {}
        if self._owns_http:  # a given client (e.g. a TestClient) keeps its own timeouts
            options["timeout"] = self.timeout if timeout is None else timeout
        try:
            response = self.http.request(method, path, params=query, json=json, **options)
        except httpx.HTTPError as exc:
            raise ClientError("unreachable", self._unreachable(method, path, exc), 0) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_error:
            raise _error_answer(response, method, path)
        if data is None:
            raise ClientError(
                "bad_response", f"{method} {path}: the answer is not JSON", response.status_code
            )
        return data

    @property
    def base_url(self) -> str:
        return str(self.http.base_url).rstrip("/")

    def _unreachable(self, method: str, path: str, exc: httpx.HTTPError | httpx.StreamError) -> str:
        """One line naming the URL: the usual cause is a node that is not running there."""
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            return f"no chain node answers at {self.base_url} ({reason}); is it running?"
        return f"{method} {self.base_url}{path}: {reason}"

    def _refuse_if_not_a_chain_node(self) -> None:
        """After a "no such route" answer: if ``/health`` shows the server is not a chain node
        (an agent's URL passed as ``--chain``, say), raise ``not_a_chain_node`` instead.

        A chain node's ``/health`` names its ``chain_id`` and ``height``; an agent's names its
        ``role``. Checked once per client; a server that does not answer keeps the original
        error."""
        if self._not_a_chain_node is None:
            self._not_a_chain_node = self._why_not_a_chain_node()
        if self._not_a_chain_node:
            raise ClientError("not_a_chain_node", self._not_a_chain_node, 0)

    def _why_not_a_chain_node(self) -> str | None:
        """Why the server is not a chain node; "" when it is one, None when ``/health`` does
        not answer at all (then nothing is learnt)."""
        health: Any = None
        try:
            health = self._answer("GET", "/health")
        except ClientError as exc:
            if exc.status == 0:  # no answer at all: nothing learnt
                return None
        if isinstance(health, dict) and {"chain_id", "height"} <= set(health):
            return ""
        role = health.get("role") if isinstance(health, dict) else None
        what = f"it is a {role} agent" if role else "its /health is not a chain node's"
        return (
            f"{self.base_url} is not a ProofNet chain node ({what}); "
            "pass the chain node's URL to --chain"
        )

    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str(self._request("GET", "/params")["chain_id"])
        return self._chain_id

    def params(self) -> JsonObject:
        answer = self._request("GET", "/params")
        self._chain_id = str(answer["chain_id"])  # the same answer names it: no second read
        return dict(answer["params"])

    def health(self) -> JsonObject:
        return dict(self._request("GET", "/health"))

    def head_height(self) -> int:
        return int(self._request("GET", "/health")["height"])

    def chain_head(self) -> ChainHead:
        health = self._request("GET", "/health")
        return ChainHead(int(health["height"]), int(health["last_event_id"]))

    def submit(self, tx: TxLike, wait: bool = False, timeout: float | None = None) -> Receipt:
        params = {"wait": "true", "timeout": timeout} if wait else None
        data = self._request(
            "POST",
            "/txs",
            params=params,
            json=_tx_json(tx),
            timeout=self._wait_timeout(wait, timeout),
        )
        return Receipt.from_json(data)

    def post_job(
        self, tx: TxLike, wait: bool = True, timeout: float | None = None
    ) -> JobSubmission:
        params = {"wait": "true" if wait else "false", "timeout": timeout}
        data = self._request(
            "POST",
            "/jobs",
            params=params,
            json=_tx_json(tx),
            timeout=self._wait_timeout(wait, timeout),
        )
        return JobSubmission(str(data["job_id"]), Receipt.from_json(data["receipt"]))

    def _wait_timeout(self, wait: bool, timeout: float | None) -> float:
        if not wait:
            return self.timeout
        return max(self.timeout, (timeout or DEFAULT_TIMEOUT) + 10.0)

    def receipt(self, tx_hash: str) -> Receipt:
        return Receipt.from_json(self._request("GET", f"/txs/{tx_hash}"))

    def get_account(self, address: str) -> JsonObject:
        return dict(self._request("GET", f"/accounts/{address}"))

    def pending_nonce(self, address: str) -> int:
        return int(self.get_account(address)["next_nonce"])

    def get_job(self, job_id: str) -> JsonObject:
        return dict(self._request("GET", f"/jobs/{job_id}"))

    def list_jobs(
        self,
        status: str | None = None,
        submitter: str | None = None,
        solver: str | None = None,
        job_ids: Sequence[str] | None = None,
    ) -> list[JsonObject]:
        """Jobs by filter, every page of them; with ``job_ids``, only those jobs (in
        requests of at most ``MAX_JOB_IDS`` ids; an unknown id is simply absent)."""
        if job_ids is not None:
            ids = list(job_ids)
            return [
                job
                for start in range(0, len(ids), MAX_JOB_IDS)
                for job in self._jobs_page(
                    status, submitter, solver, ids[start : start + MAX_JOB_IDS], MAX_JOB_IDS, 0
                )
            ]
        found: list[JsonObject] = []
        offset, page = 0, 1000
        while True:
            batch = self._jobs_page(status, submitter, solver, None, page, offset)
            found.extend(batch)
            if len(batch) < page:
                return found
            offset += page

    def _jobs_page(
        self,
        status: str | None,
        submitter: str | None,
        solver: str | None,
        job_ids: list[str] | None,
        limit: int,
        offset: int,
    ) -> list[JsonObject]:
        params = {
            "status": status,
            "submitter": submitter,
            "solver": solver,
            "job_id": job_ids,
            "limit": limit,
            "offset": offset,
        }
        return list(self._request("GET", "/jobs", params=params))

    def get_dispute(self, dispute_id: str) -> JsonObject:
        return dict(self._request("GET", f"/disputes/{dispute_id}"))

    def list_disputes(self, job_id: str | None = None) -> list[JsonObject]:
        return list(self._request("GET", "/disputes", params={"job_id": job_id}))

    def get_block(self, height: int) -> Block:
        return _block_from_view(self._request("GET", f"/blocks/{height}"))

    def head_block(self) -> Block:
        return _block_from_view(self._request("GET", "/blocks/head"))

    def events_since(self, since: int, limit: int = 100, timeout: float = 0.0) -> list[ChainEvent]:
        params = {"since": since, "limit": limit, "timeout": timeout}
        data = self._request("GET", "/events", params=params, timeout=self.timeout + timeout)
        return [ChainEvent.from_json(e) for e in data["events"]]

    def stream_events(
        self, since: int, heartbeat: float = 5.0, silence: float | None = None
    ) -> Iterator[ChainEvent]:
        """Every event after ``since``, each as the node seals its block, for as long as the
        caller iterates (``GET /events/stream``: one request, however long). Raises
        ClientError when the node does not answer, answers an error or a message that is not
        an event, or sends nothing — not even its keep-alive, every ``heartbeat`` seconds —
        for ``silence`` seconds (default twice the heartbeat, whatever the client's timeout:
        a half-open connection is noticed in seconds). Leaving the loop closes the
        connection."""
        path = "/events/stream"
        options: dict[str, Any] = {}
        if self._owns_http:
            read = 2 * heartbeat if silence is None else silence
            options["timeout"] = httpx.Timeout(self.timeout, read=read)
        params = {"since": since, "heartbeat": heartbeat}
        try:
            with self.http.stream("GET", path, params=params, **options) as response:
                if response.is_error:
                    response.read()
                    raise _error_answer(response, "GET", path)
                data: list[str] = []
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif not line and data:
                        try:
                            event = ChainEvent.from_json(jsonlib.loads("\n".join(data)))
                        except (ValueError, TypeError, KeyError, RecursionError) as exc:
                            what = f"{type(exc).__name__}: {str(exc)[:200]}"
                            raise ClientError("bad_response", f"GET {path}: {what}", 200) from exc
                        data = []
                        yield event
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise ClientError("unreachable", self._unreachable("GET", path, exc), 0) from exc

    def sample(self, job_id: str, verifier: str) -> list[int]:
        return [int(s) for s in self._request("GET", f"/samples/{job_id}/{verifier}")["segments"]]

    def produce_block(self) -> Block:
        return _block_from_view(self._request("POST", "/dev/blocks"))

    def supply(self) -> JsonObject:
        return dict(self._request("GET", "/supply"))

    def proven_record(
        self,
        kind: str,
        identifier: str,
        header: BlockHeader | None = None,
        *,
        producer_key: bytes,
    ) -> JsonObject | None:
        """The record of ``/proofs/{kind}/{identifier}`` (kind: accounts, jobs or disputes),
        verified against the state root of a header the block producer signed; ``None`` when
        the proof shows no record.

        ``producer_key`` is the producer's public key (DER) as the caller already trusts it
        (the chain's genesis, a node it trusts): never one read from this node for this call.
        The header — ``header``, else this node's at the proof's height — must carry that
        key's signature of its hash (``InvalidHeaderSignatureError`` otherwise), so a node
        cannot invent a state root. The node proves against its head only, so a header of
        another height is refused. Raises ``StateProofError`` unless the answer proves exactly
        that record under that root (docs/state-commitment.md, "Trust").
        """
        table = PROOF_TABLES.get(kind)
        if table is None:
            raise ValueError(f"kind must be one of {sorted(PROOF_TABLES)}, not {kind!r}")
        answer = self._request("GET", f"/proofs/{kind}/{identifier}")
        if not isinstance(answer, dict) or not isinstance(answer.get("height"), int):
            raise StateProofError("a proof answer is an object with an integer height")
        if header is None:
            header = self.get_block(answer["height"]).header
        check_producer_signature(header, producer_key)
        key = identifier if table == ACCOUNTS else identifier.removeprefix("0x").lower()
        record: JsonObject | None = _verified_row(answer, table, key, header)
        return record


def _error_answer(response: httpx.Response, method: str, path: str) -> ClientError:
    """The ClientError an error answer means: the node's ``{"error": {"code", "message"}}``,
    else the HTTP status."""
    try:
        data = response.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and "code" in error:
        return ClientError(str(error["code"]), str(error.get("message", "")), response.status_code)
    return ClientError(
        "http_error", f"{method} {path}: HTTP {response.status_code}", response.status_code
    )


def _block_from_view(data: Any) -> Block:
    block = Block.from_json({"header": data["header"], "transactions": data["transactions"]})
    if block.hash.hex() != data["hash"]:
        raise ClientError(
            "bad_response", f"block {block.height}: hash does not match its header", 200
        )
    return block


# --- signing --------------------------------------------------------------------------------


class Wallet:
    """One key, its address and its next nonce, tracked locally.

    ``send`` signs with the local nonce and submits; on a nonce error it re-reads the pending
    nonce from the chain and retries once. Any other rejection re-syncs too (the nonce was not
    used) and raises.
    """

    def __init__(self, key: PrivateKey, client: ChainClient) -> None:
        self.key = key
        self.client = client
        self._lock = threading.Lock()
        self._nonce: int | None = None

    @property
    def address(self) -> Address:
        return self.key.address

    def sync(self) -> int:
        """Re-read the next nonce (pending transactions counted) from the chain."""
        with self._lock:
            self._nonce = self.client.pending_nonce(self.address)
            return self._nonce

    def sign(
        self,
        kind: str | TxBody,
        body: Mapping[str, Any] | None = None,
        nonce: int | None = None,
    ) -> Transaction:
        """Sign a typed body (or a kind and its JSON body) with the next local nonce (or
        ``nonce``) without sending it."""
        with self._lock:
            if nonce is None:
                if self._nonce is None:
                    self._nonce = self.client.pending_nonce(self.address)
                nonce = self._nonce
                self._nonce += 1
        if isinstance(kind, TxBody):
            return sign_transaction(self.key, self.client.chain_id(), nonce, kind)
        return sign_transaction(self.key, self.client.chain_id(), nonce, kind, body or {})

    def submit(self, tx: Transaction, wait: bool = False) -> Receipt:
        """Submit ``tx`` (from ``sign``) once. If the chain refuses it, its nonce was not used:
        the local nonce goes back to it, or, after a nonce error, is re-read at the next
        ``sign`` (an agent, which retries on its next tick, reads nothing more here)."""
        try:
            return self.client.submit(tx, wait)
        except ProofNetError as exc:
            with self._lock:
                self._nonce = None if exc.code in NONCE_ERROR_CODES else tx.nonce
            raise

    def send(
        self, kind: str | TxBody, body: Mapping[str, Any] | None = None, *, wait: bool = False
    ) -> Receipt:
        """Sign (a typed body, or a kind and its JSON body) and submit; retries once after
        re-syncing on a nonce error."""
        for attempt in (1, 2):
            tx = self.sign(kind, body)
            try:
                return self.client.submit(tx, wait)
            except ClientError as exc:
                self.sync()
                if exc.code in NONCE_ERROR_CODES and attempt == 1:
                    continue
                raise
        raise AssertionError("unreachable")

    def post_job(
        self, body: PostJobBody | Mapping[str, Any], *, wait: bool = True
    ) -> JobSubmission:
        tx = self.sign(body) if isinstance(body, PostJobBody) else self.sign("post_job", body)
        try:
            return self.client.post_job(tx, wait)
        except ClientError:
            self.sync()
            raise

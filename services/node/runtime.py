"""What a running node holds besides its routes: the chain, a block notifier for long-polls,
its metrics, the background block producer, and the reading of submissions.

Reading a submission (``read_envelope``, ``read_batch``): the body is read within the
middleware's cap, a transaction larger than its kind allows is refused before it is parsed
(``check_encoded_size``), and a large body is parsed in a worker thread, not on the event loop.
``submit`` then parses the envelope and verifies its signature outside the chain's lock (a
thread of the pool), ``submit_batch`` hands a batch to the chain's verifying processes; one
sequencer applies transactions, in order, under the lock.

``BlockNotifier`` bridges threads and the event loop: the chain calls ``notify`` (from whatever
thread sealed the block); coroutines wait with ``wait_after(generation, timeout)``. A waiter
reads ``generation`` *before* it looks at the chain, so a block sealed in between is never
missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any, TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from contracts_sim.blocks import Block, ChainEvent, Receipt
from contracts_sim.chain import Chain
from contracts_sim.exceptions import TransactionTooLargeError
from contracts_sim.transactions import (
    MAX_SMALL_TRANSACTION_BYTES,
    check_encoded_size,
    check_transaction_size,
    max_request_bytes,
)
from protocol.errors import ProofNetError
from services.errors import BatchTooLargeError
from services.node.errors import MAX_BATCH_BYTES, check_batch_structure
from services.node.metrics import NodeMetrics, known_kind
from services.node.schemas import TxEnvelope
from services.node.settings import NodeSettings

log = logging.getLogger("proofnet.node")

MAX_CONCURRENT_BATCH_PARSES = 2
"""Batches parsed at once: a parse holds the GIL, so more at once only add memory (a 4 MiB
batch of small values takes over a hundred MiB parsed) and lengthen the event loop's pauses;
further batches wait their turn without a thread."""


class BlockNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self, _block: Block | None = None) -> None:
        """A block was sealed (any thread)."""
        with self._lock:
            self._generation += 1
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(_resolve, future)

    async def wait_after(self, generation: int, timeout: float) -> bool:
        """Wait until a block after ``generation`` is sealed; False on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._generation != generation:
                return True
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))
            return False
        return True


class _BatchShape(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    txs: list[Any]


_Model = TypeVar("_Model", bound=BaseModel)


def _require_json(request: Request) -> None:
    """FastAPI's rule for a declared body: JSON unless a content type says otherwise."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    subtype = content_type.split(";", 1)[0].strip().lower().rpartition("/")[2]
    if subtype != "json" and not subtype.endswith("+json"):
        raise RequestValidationError(
            [{"type": "dict_type", "loc": ("body",), "msg": "Input should be a JSON object"}]
        )


def _parse(model: type[_Model], encoded: bytes) -> _Model:
    """``model`` from JSON bytes; the errors FastAPI would raise for a declared body."""
    if not encoded.strip():
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    try:
        return model.model_validate_json(encoded)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class NodeRuntime:
    def __init__(self, chain: Chain, settings: NodeSettings) -> None:
        self.chain = chain
        self.settings = settings
        self.notifier = BlockNotifier()
        self.metrics = NodeMetrics(chain)
        self._unsubscribers = [
            chain.subscribe(self.notifier.notify),
            chain.subscribe(self.metrics.on_block),
        ]
        self._producer: asyncio.Task[None] | None = None
        self._batch_parses = CapacityLimiter(MAX_CONCURRENT_BATCH_PARSES)

    # --- admission ----------------------------------------------------------------------

    @property
    def max_body_bytes(self) -> int:
        """The largest request body read at all: the setting, else the largest transaction the
        chain's params allow (a pre-state blob in hex)."""
        if self.settings.max_body_bytes is not None:
            return self.settings.max_body_bytes
        return max_request_bytes(self.chain.params.max_blob_bytes)

    @property
    def max_batch_bytes(self) -> int:
        """The largest batch body read: ``MAX_BATCH_BYTES``, or the operator's smaller
        ``max_body_bytes``."""
        configured = self.settings.max_body_bytes
        return MAX_BATCH_BYTES if configured is None else min(MAX_BATCH_BYTES, configured)

    async def read_envelope(self, request: Request) -> dict[str, Any]:
        """The request's signed envelope: refused by size before it is parsed (413), then
        parsed (a large one off the event loop) into the envelope's shape (400, 422); the
        kind's limit is checked again on the parsed kind (a key spelt with escapes)."""
        encoded = await request.body()
        _require_json(request)
        max_blob = self.chain.params.max_blob_bytes
        try:
            check_encoded_size(encoded, max_blob)
            if len(encoded) > MAX_SMALL_TRANSACTION_BYTES:
                envelope = await run_in_threadpool(_parse, TxEnvelope, encoded)
            else:
                envelope = _parse(TxEnvelope, encoded)
            check_transaction_size(envelope.kind, len(encoded), max_blob)
        except TransactionTooLargeError as exc:
            with self.metrics.submission(exc.kind):
                raise  # counted as a rejected submission of its kind
        return envelope.model_dump()

    async def read_batch(self, request: Request) -> list[Any]:
        """The items of a ``{"txs": [...]}`` batch, at most ``max_batch_txs`` (else
        ``BatchTooLargeError``, 413). The work is bounded before parsing: the body is at most
        ``max_batch_bytes`` (the middleware) and holds at most the JSON separators
        ``max_batch_txs`` transactions need (``BatchTooComplexError``, 413); then it is parsed
        off the event loop, ``MAX_CONCURRENT_BATCH_PARSES`` at a time. Items are not checked
        here: each is judged alone by the chain, so a malformed one is refused by itself."""
        encoded = await request.body()
        _require_json(request)
        max_txs = self.settings.max_batch_txs
        check_batch_structure(encoded, max_txs)
        batch = await to_thread.run_sync(_parse, _BatchShape, encoded, limiter=self._batch_parses)
        if len(batch.txs) > max_txs:
            raise BatchTooLargeError(len(batch.txs), max_txs)
        return batch.txs

    async def submit_batch(self, items: list[Any]) -> list[str | ProofNetError]:
        """``Chain.submit_many``: per item, its hash or the error that refused it."""
        results = await run_in_threadpool(self.chain.submit_many, items)
        counts: Counter[tuple[str, str, str]] = Counter()
        for item, result in zip(items, results, strict=True):
            kind = known_kind(str(item.get("kind") if isinstance(item, dict) else None))
            if isinstance(result, ProofNetError):
                counts[(kind, "rejected", result.code)] += 1
            else:
                counts[(kind, "accepted", "")] += 1
        for labels, count in counts.items():  # as many submissions, counted at once
            self.metrics.transactions_submitted.labels(*labels).inc(count)
        return results

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self.settings.start_checkers:
            self.chain.checker.start()  # the first batch need not wait for workers to spawn
        if self.settings.block_time > 0 and self._producer is None:
            self._producer = asyncio.get_running_loop().create_task(self._produce_blocks())

    async def stop(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
            self._producer = None
        for unsubscribe in self._unsubscribers:
            unsubscribe()

    async def _produce_blocks(self) -> None:
        """One block every ``block_time`` seconds, empty or not: height is the clock."""
        loop = asyncio.get_running_loop()
        interval = self.settings.block_time
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at + interval, loop.time())
            try:
                await run_in_threadpool(self.chain.produce_block)
            except Exception:
                log.exception("block production failed; retrying at the next tick")

    # --- waiting ------------------------------------------------------------------------

    async def submit(self, tx: Mapping[str, Any], wait: bool, timeout: float | None) -> Receipt:
        """Submit; with ``wait``, return once the transaction is in a block (or the timeout
        passes: the receipt is then still pending)."""
        generation = self.notifier.generation
        receipt = await run_in_threadpool(self._submit_and_read, tx)
        tx_hash = receipt.tx_hash
        if not wait:
            return receipt
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.settings.wait_timeout if timeout is None else timeout)
        while receipt.status == "pending":
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if self.settings.automine:
                await run_in_threadpool(self.chain.produce_block)
            else:
                await self.notifier.wait_after(generation, remaining)
            generation = self.notifier.generation
            receipt = await run_in_threadpool(self.chain.receipt, tx_hash)
        return receipt

    def _submit_and_read(self, tx: Mapping[str, Any]) -> Receipt:
        """``submit`` then its receipt, in one trip to a worker thread."""
        return self.chain.receipt(self.chain.submit(tx))

    async def events(self, since: int, limit: int, timeout: float) -> list[ChainEvent]:
        """Events after ``since``; if there are none, wait up to ``timeout`` for a block."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            generation = self.notifier.generation
            events = await run_in_threadpool(self.chain.events_since, since, limit)
            remaining = deadline - loop.time()
            if events or remaining <= 0:
                return events
            await self.notifier.wait_after(generation, remaining)

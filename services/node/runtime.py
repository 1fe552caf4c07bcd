"""What a running node holds besides its routes: the chain, a block notifier for long-polls,
its metrics, and the background block producer.

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
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from contracts_sim.blocks import Block, ChainEvent, Receipt
from contracts_sim.chain import Chain
from contracts_sim.transactions import check_transaction_size, max_request_bytes
from services.node.metrics import NodeMetrics
from services.node.settings import NodeSettings

log = logging.getLogger("proofnet.node")


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

    # --- admission ----------------------------------------------------------------------

    @property
    def max_body_bytes(self) -> int:
        """The largest request body read at all: the setting, else the largest transaction the
        chain's params allow (a pre-state blob in hex)."""
        if self.settings.max_body_bytes is not None:
            return self.settings.max_body_bytes
        return max_request_bytes(self.chain.params.max_blob_bytes)

    async def check_size(self, request: Request, kind: str) -> None:
        """Refuse a transaction larger than any valid one of its ``kind`` (413), before it is
        hashed or verified (the body was read already, within ``max_body_bytes``)."""
        size = len(await request.body())
        check_transaction_size(kind, size, self.chain.params.max_blob_bytes)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
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
        tx_hash = await run_in_threadpool(self.chain.submit, tx)
        receipt = await run_in_threadpool(self.chain.receipt, tx_hash)
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

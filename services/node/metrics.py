"""Prometheus metrics of a chain node, served at ``GET /metrics``.

Each app has its own ``CollectorRegistry`` (never the global one), so several nodes in one
process (tests, an in-process localnet) keep separate counts. Three sources:

* events as they happen: blocks sealed and the transactions they include (a block listener),
  transactions submitted by kind and result (``submission``; an envelope that does not even
  parse has no kind and shows only as a 4xx of its route), HTTP requests by route
  (``RequestMetricsMiddleware``);
* the chain's state, read at scrape time (``ChainStateCollector``): height, mempool, jobs by
  status, open disputes, solvers slashed. These are right after a restart too, since the
  chain, not this process, holds them.

Label values come from closed sets (known kinds, error codes, route templates), so a client
cannot grow the series without bound by sending made-up kinds or paths.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts_sim.blocks import Block
from contracts_sim.chain import Chain
from contracts_sim.records import DisputeStatus, JobStatus
from contracts_sim.transactions import TX_KINDS
from protocol.errors import ProofNetError

UNKNOWN_KIND = "unknown"
UNMATCHED_ROUTE = "unmatched"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Seconds; up to a minute, since ``/events`` and ``?wait=true`` long-poll that long."""


def known_kind(kind: str) -> str:
    """``kind`` if the ledger has it, else ``unknown`` (a label value from a closed set)."""
    return kind if kind in TX_KINDS else UNKNOWN_KIND


class ChainStateCollector(Collector):
    """Gauges read from the head state at each scrape."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def collect(self) -> Iterable[Metric]:
        chain = self.chain
        height = GaugeMetricFamily("proofnet_chain_height", "Height of the head block.")
        height.add_metric([], chain.height)
        mempool = GaugeMetricFamily(
            "proofnet_mempool_transactions", "Transactions accepted, waiting for the next block."
        )
        mempool.add_metric([], len(chain.pending_hashes()))
        jobs = chain.list_jobs()
        by_status = GaugeMetricFamily(
            "proofnet_jobs", "Jobs on chain by status.", labels=["status"]
        )
        for status in JobStatus:
            by_status.add_metric([status.value], sum(job.status == status for job in jobs))
        disputes = chain.list_disputes()
        open_disputes = GaugeMetricFamily("proofnet_disputes_open", "Disputes not yet resolved.")
        open_disputes.add_metric([], sum(d.status == DisputeStatus.OPEN for d in disputes))
        slashes = CounterMetricFamily(
            "proofnet_solver_slashes",
            "Solvers slashed on this chain (jobs that ended slashed: lost a dispute or missed "
            "the training deadline).",
        )
        slashes.add_metric([], sum(job.status == JobStatus.SLASHED for job in jobs))
        yield from (height, mempool, by_status, open_disputes, slashes)


class NodeMetrics:
    """The metrics of one node, in their own registry."""

    def __init__(self, chain: Chain) -> None:
        self.registry = CollectorRegistry()
        self.blocks_sealed = Counter(
            "proofnet_blocks_sealed",
            "Blocks this node sealed since it started (empty ones included).",
            registry=self.registry,
        )
        self.transactions_included = Counter(
            "proofnet_transactions_included",
            "Transactions applied in blocks this node sealed, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.transactions_submitted = Counter(
            "proofnet_transactions_submitted",
            "Transactions submitted to this node by kind and result: accepted into the open "
            "block, or rejected with the error code (code is empty when accepted).",
            ["kind", "result", "code"],
            registry=self.registry,
        )
        self.event_streams_opened = Counter(
            "proofnet_event_streams_opened",
            "GET /events/stream requests opened (each one request for as long as it lasts; "
            "the request metrics count it when it closes).",
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "proofnet_http_request_duration_seconds",
            "HTTP request latency by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(ChainStateCollector(chain))

    def on_block(self, block: Block) -> None:
        """A block listener (``Chain.subscribe``): count the block and what it applied."""
        self.blocks_sealed.inc()
        for tx in block.transactions:
            self.transactions_included.labels(known_kind(tx.kind)).inc()

    @contextmanager
    def submission(self, kind: str) -> Iterator[None]:
        """Count one submission of a ``kind`` transaction: accepted if the block takes it,
        rejected with its code if a typed error leaves the block."""
        label = known_kind(kind)
        try:
            yield
        except ProofNetError as exc:
            self.transactions_submitted.labels(label, "rejected", exc.code).inc()
            raise
        self.transactions_submitted.labels(label, "accepted", "").inc()


def flat_routes(routes: Sequence[BaseRoute]) -> list[Any]:
    """Every route with its full path (``.path``, ``.matches``), included routers expanded:
    FastAPI from 0.16x keeps an included router as one entry whose routes carry no prefix."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies included routes, prefixed, into app.routes
        return list(routes)
    return list(iter_route_contexts(routes))


def route_template(routes: Sequence[Any], scope: Scope) -> str:
    """The path template of the route ``scope`` asks for (a method mismatch still names it),
    or ``unmatched``."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(route.path)
        if match == Match.PARTIAL and partial is None:
            partial = str(route.path)
    return partial or UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Time every HTTP request, labelled by the route template it matched (``/jobs/{job_id}``,
    not the id: bounded cardinality) or ``unmatched``."""

    def __init__(self, app: ASGIApp, metrics: NodeMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._routes: list[Any] | None = None  # read from the app at the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: an exception escaped every handler
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if self._routes is None:
                self._routes = flat_routes(scope["app"].router.routes)
            template = route_template(self._routes, scope)
            self.metrics.request_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )

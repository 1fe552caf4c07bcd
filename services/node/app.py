"""``create_app(settings)``: the chain node, a thin FastAPI app over ``contracts_sim.Chain``.

Routes (one router per resource; OpenAPI docs at ``/docs``, Swagger UI served with its
assets from the fastapi-offline package: it works with no network)::

    GET  /health                          liveness, head
    GET  /params                          chain id, preset, ledger parameters
    GET  /supply                          the supply invariant at the head
    POST /txs[?wait=true]                 submit a signed transaction -> receipt
    GET  /txs/{tx_hash}                   receipt
    POST /jobs                            submitter entry: a signed post_job -> job id + receipt
    GET  /jobs[?job_id=…], /jobs/{job_id} jobs (or those named); one job's whole lifecycle
    GET  /disputes, /disputes/{id}        disputes: moves, phase, whose turn, deadline
    GET  /accounts/{address}              balance, stake, next nonce
    GET  /blocks/head, /blocks/{height}   blocks
    GET  /events?since=ID&timeout=S       events after ID (long-poll)
    GET  /events/stream?since=ID          every event after ID as it happens (SSE)
    GET  /samples/{job_id}/{verifier}     a verifier's spot-check sample
    GET  /proofs/{accounts,jobs,disputes}/{id}  a head-state row with its Merkle proof
    GET  /metrics                         Prometheus metrics (services.node.metrics)
    GET  /explorer                        the block explorer (services.node.explorer)
    POST /dev/blocks[?count=N]            dev mode only: produce blocks now

Blocks are produced every ``block_time`` seconds by a background task while the app runs
(empty ones too: height is the clock). Errors are JSON ``{"error": {"code", "message"}}``
(``services.node.errors``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from contracts_sim.chain import Chain
from contracts_sim.params import get_preset, with_dev_rules
from protocol.types import Address
from services.node.errors import BodyLimitMiddleware, install_error_handlers
from services.node.explorer import router as explorer_router
from services.node.metrics import RequestMetricsMiddleware
from services.node.routes import (
    accounts,
    blocks,
    dev,
    disputes,
    events,
    health,
    jobs,
    metrics,
    proofs,
    samples,
    txs,
)
from services.node.runtime import NodeRuntime
from services.node.settings import NodeSettings

log = logging.getLogger("proofnet.node")

DESCRIPTION = """\
The REST API of a ProofNet chain node: submit signed transactions, follow jobs through
their lifecycle (posted, bid on, assigned, committed, attested or challenged, settled or
slashed), watch disputes move by move, and read blocks and events.

Every error is JSON `{"error": {"code", "message"}}` with a stable snake_case `code`; each
route lists the statuses it can answer with. Transactions are signed envelopes whose `body`
depends on `kind` (docs/ledger.md has the rules of each kind).
"""
TAGS: list[dict[str, Any]] = [
    {"name": "transactions", "description": "Submit signed transactions, read receipts."},
    {"name": "jobs", "description": "Training jobs and verifiers' samples."},
    {"name": "disputes", "description": "Interactive fraud proofs, move by move."},
    {"name": "accounts", "description": "Balances, stakes and nonces."},
    {"name": "chain", "description": "Blocks, parameters, supply, health and metrics."},
    {"name": "events", "description": "The event stream (long-poll, or server-sent events)."},
    {"name": "dev", "description": "Dev mode only (`chain serve --dev`)."},
]


def open_chain(settings: NodeSettings) -> Chain:
    """Create or load the chain the settings describe (a dev node adds the dev rules: faucet)."""
    params = get_preset(settings.preset)
    return Chain.open(
        settings.db_url,
        settings.chain_id,
        with_dev_rules(params) if settings.dev else params,
        {Address(a): v for a, v in settings.genesis.items()} if settings.genesis else None,
        check_invariants=settings.invariants_checked,
        max_block_txs=settings.max_block_txs,
    )


def create_app(settings: NodeSettings | None = None, *, chain: Chain | None = None) -> FastAPI:
    """The node app. Opens the chain from ``settings`` unless one is given (tests, embedding);
    the app closes only a chain it opened itself."""
    settings = settings or NodeSettings()
    owns_chain = chain is None
    runtime = NodeRuntime(chain if chain is not None else open_chain(settings), settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        log.info(
            "chain %s at height %s (block time %ss, dev=%s)",
            runtime.chain.chain_id,
            runtime.chain.height,
            settings.block_time,
            settings.dev,
        )
        try:
            yield
        finally:
            await runtime.stop()
            if owns_chain:
                runtime.chain.close()

    app = FastAPIOffline(
        title="ProofNet chain node",
        summary="A simulated ledger for verifiable decentralized training.",
        description=DESCRIPTION,
        version="0.1.0",
        openapi_tags=TAGS,
        lifespan=lifespan,
        # Swagger UI would fetch a validator badge from validator.swagger.io, and ReDoc its
        # logo from cdn.redoc.ly: no request may leave the machine.
        swagger_ui_parameters={"validatorUrl": None},
        redoc_url=None,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=runtime.max_body_bytes,
        max_batch_bytes=runtime.max_batch_bytes,
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=runtime.metrics)  # outermost: times all
    app.state.runtime = runtime
    install_error_handlers(app)
    for module in (health, txs, jobs, accounts, disputes, blocks, events, samples, proofs, metrics):
        app.include_router(module.router)
    app.include_router(explorer_router)
    if settings.dev:
        app.include_router(dev.router)
    _describe_errors_as_they_are(app)
    return app


def _describe_errors_as_they_are(app: FastAPI) -> None:
    """Drop the 422 ``HTTPValidationError`` FastAPI adds to every route with parameters: the
    node answers 422 as ``ErrorResponse`` (``services.node.errors``), and only on the routes
    that declare it, where a parameter can actually fail validation."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                default = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(default.get("content", "")):
                    del operation["responses"]["422"]
        components = schema.get("components", {}).get("schemas", {})
        if "HTTPValidationError" not in str(schema.get("paths", "")):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

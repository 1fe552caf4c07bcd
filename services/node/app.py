"""``create_app(settings)``: the chain node, a thin FastAPI app over ``contracts_sim.Chain``.

Routes (one router per resource; OpenAPI docs at ``/docs``)::

    GET  /health                          liveness, head
    GET  /params                          chain id, preset, ledger parameters
    GET  /supply                          the supply invariant at the head
    POST /txs[?wait=true]                 submit a signed transaction -> receipt
    GET  /txs/{tx_hash}                   receipt
    POST /jobs                            submitter entry: a signed post_job -> job id + receipt
    GET  /jobs, /jobs/{job_id}            jobs; one job's whole lifecycle
    GET  /disputes, /disputes/{id}        disputes: moves, phase, whose turn, deadline
    GET  /accounts/{address}              balance, stake, next nonce
    GET  /blocks/head, /blocks/{height}   blocks
    GET  /events?since=ID&timeout=S       events after ID (long-poll)
    GET  /samples/{job_id}/{verifier}     a verifier's spot-check sample
    POST /dev/blocks[?count=N]            dev mode only: produce blocks now

Blocks are produced every ``block_time`` seconds by a background task while the app runs
(empty ones too: height is the clock). Errors are JSON ``{"error": {"code", "message"}}``
(``services.node.errors``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from contracts_sim.chain import Chain
from contracts_sim.params import get_preset, with_dev_rules
from protocol.types import Address
from services.node.errors import BodyLimitMiddleware, install_error_handlers
from services.node.routes import accounts, blocks, dev, disputes, events, health, jobs, samples, txs
from services.node.runtime import NodeRuntime
from services.node.settings import NodeSettings

log = logging.getLogger("proofnet.node")


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

    app = FastAPI(
        title="ProofNet chain node",
        summary="A simulated ledger for verifiable decentralized training.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=runtime.max_body_bytes)
    app.state.runtime = runtime
    install_error_handlers(app)
    for module in (health, txs, jobs, accounts, disputes, blocks, events, samples):
        app.include_router(module.router)
    if settings.dev:
        app.include_router(dev.router)
    return app

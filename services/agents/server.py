"""The solver's data endpoint: leaf lists, checkpoint blobs and final models over HTTP.

    GET /health                      {"status": "ok", "address": ...}
    GET /metrics                     Prometheus counters (``services.agents.telemetry``)
    GET /stats                       the agent's work so far as JSON (jobs, seconds, steps)
    GET /jobs/{job_id}/leaves        {"leaves": [hex, ...]}      (what the strategy serves)
    GET /blobs/{job_id}/{entry}      the blob whose SHA-256 is ``entry`` (octet-stream)
    GET /jobs/{job_id}/model         the final state's canonical bytes (after training)

A verifier's endpoint serves /health, /metrics and /stats only. /metrics does not take the
agent's lock: its counters are thread-safe, and a scrape must not wait out a training tick.

Errors are JSON ``{"error": {"code", "message"}}`` with a 4xx status, like the chain node's.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.agents.telemetry import METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from services.agents.solver import SolverAgent
    from services.agents.verifier import VerifierAgent

_HEX32 = re.compile(r"^[0-9a-f]{64}$")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _add_metrics_routes(
    app: FastAPI, agent: SolverAgent | VerifierAgent, guard: threading.Lock
) -> None:
    """/metrics for Prometheus, /stats for people and scripts (the demo's figures)."""

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics of this agent")
    def metrics() -> Response:
        return Response(agent.telemetry.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/stats", summary="This agent's work so far, as JSON")
    def stats() -> dict[str, Any]:
        with guard:
            return dict(agent.metrics())


def create_solver_app(agent: SolverAgent, lock: threading.Lock | None = None) -> FastAPI:
    """An app serving ``agent``'s data; ``lock`` serialises access with the agent's loop."""
    guard = lock or threading.Lock()
    app = FastAPI(title="ProofNet solver", version="1")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(
            exc.status_code,
            "not_found" if exc.status_code == 404 else "http_error",
            str(exc.detail),
        )

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "role": "solver", "address": agent.address}

    _add_metrics_routes(app, agent, guard)

    @app.get("/jobs/{job_id}/leaves", response_model=None)
    def leaves(job_id: str) -> Any:
        if not _HEX32.match(job_id):
            return _error(400, "invalid_job_id", "job id must be 64 lowercase hex digits")
        with guard:
            served = agent.serve_leaves(job_id)
        if served is None:
            return _error(404, "not_available", f"no leaves served for job {job_id}")
        return {"job_id": job_id, "leaves": [e.hex() for e in served]}

    @app.get("/blobs/{job_id}/{entry}", response_model=None)
    def blob(job_id: str, entry: str) -> Any:
        if not (_HEX32.match(job_id) and _HEX32.match(entry)):
            return _error(400, "invalid_hash", "job id and entry must be 64 lowercase hex digits")
        with guard:
            data = agent.serve_blob(job_id, bytes.fromhex(entry))
        if data is None:
            return _error(404, "not_available", f"no blob {entry} served for job {job_id}")
        return Response(content=data, media_type="application/octet-stream")

    @app.get("/jobs/{job_id}/model", response_model=None)
    def model(job_id: str) -> Any:
        if not _HEX32.match(job_id):
            return _error(400, "invalid_job_id", "job id must be 64 lowercase hex digits")
        with guard:
            data = agent.serve_model(job_id)
        if data is None:
            return _error(404, "not_available", f"no trained model for job {job_id}")
        return Response(content=data, media_type="application/octet-stream")

    return app


def create_verifier_app(agent: VerifierAgent, lock: threading.Lock | None = None) -> FastAPI:
    """A verifier's small endpoint: health and the work it has done."""
    guard = lock or threading.Lock()
    app = FastAPI(title="ProofNet verifier", version="1")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "role": "verifier", "address": agent.address}

    _add_metrics_routes(app, agent, guard)

    return app

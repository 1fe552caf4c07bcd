from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from services.node.deps import RuntimeDep

router = APIRouter(tags=["chain"])

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_FORMAT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                TEXT_FORMAT: {"schema": {"type": "string"}},
                OPENMETRICS_FORMAT: {"schema": {"type": "string"}},
            },
            "description": "The Prometheus text format, or OpenMetrics if the Accept header "
            "asks for it",
        }
    },
)
def get_metrics(runtime: RuntimeDep, request: Request) -> Response:
    """This node's metrics for a Prometheus scrape: blocks (height, sealed), transactions by
    kind and result (accepted, or rejected with the error code), mempool size, jobs by
    status, open disputes, solvers slashed, and HTTP request latency by route."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(runtime.metrics.registry), media_type=content_type)

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.node.deps import ChainDep
from services.node.errors import DISPUTE_NOT_FOUND, INVALID_ID, error_responses
from services.node.schemas import DisputePublic
from services.node.views import dispute_view, parse_id

router = APIRouter(prefix="/disputes", tags=["disputes"])


@router.get(
    "",
    response_model=list[DisputePublic],
    summary="Disputes, optionally of one job",
    responses=error_responses(INVALID_ID),
)
def list_disputes(chain: ChainDep, job_id: str | None = None) -> list[dict[str, Any]]:
    """Disputes at the head block, optionally of one job."""
    wanted = None if job_id is None else parse_id(job_id, "job id")
    return [dispute_view(chain, d) for d in chain.list_disputes(job_id=wanted)]


@router.get(
    "/{dispute_id}",
    response_model=DisputePublic,
    summary="A dispute: moves, phase, whose turn, deadline",
    responses=error_responses(INVALID_ID, DISPUTE_NOT_FOUND),
)
def get_dispute(dispute_id: str, chain: ChainDep) -> dict[str, Any]:
    """A dispute: every move so far, the phase, whose turn it is, and the deadline."""
    return dispute_view(chain, chain.get_dispute(parse_id(dispute_id, "dispute id")))

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.node.deps import ChainDep
from services.node.errors import (
    INVALID_ID,
    JOB_NOT_FOUND,
    SAMPLE_SEED_NOT_READY,
    error_responses,
)
from services.node.schemas import SamplePublic
from services.node.views import parse_address, parse_id

router = APIRouter(prefix="/samples", tags=["jobs"])


@router.get(
    "/{job_id}/{verifier}",
    response_model=SamplePublic,
    summary="A verifier's spot-check sample",
    responses=error_responses(INVALID_ID, JOB_NOT_FOUND, SAMPLE_SEED_NOT_READY),
)
def get_sample(job_id: str, verifier: str, chain: ChainDep) -> dict[str, Any]:
    """The segments ``verifier`` must re-execute for a committed job: derived from the final
    root, the hash of the block after the final commitment and the verifier's address, so
    anyone can recompute it (409 ``sample_seed_not_ready`` until that block exists)."""
    sample = chain.sample(parse_id(job_id, "job id"), parse_address(verifier))
    return sample.to_json()

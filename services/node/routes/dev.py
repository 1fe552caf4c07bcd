from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from services.node.deps import ChainDep
from services.node.errors import BAD_PARAMETER, error_responses
from services.node.schemas import BlockPublic
from services.node.views import block_view

router = APIRouter(prefix="/dev", tags=["dev"])


@router.post(
    "/blocks",
    response_model=BlockPublic,
    status_code=201,
    summary="Produce blocks now (dev mode)",
    responses=error_responses(BAD_PARAMETER),
)
async def produce_blocks(
    chain: ChainDep, count: Annotated[int, Query(ge=1, le=1000)] = 1
) -> dict[str, Any]:
    """Dev mode only: produce ``count`` blocks now (the clock moves); returns the last one."""
    block = None
    for _ in range(count):
        block = await run_in_threadpool(chain.produce_block)
    assert block is not None
    return block_view(block)

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from services.node.deps import ChainDep
from services.node.errors import BAD_PARAMETER, BLOCK_NOT_FOUND, error_responses
from services.node.schemas import BlockPublic
from services.node.views import block_view

router = APIRouter(prefix="/blocks", tags=["chain"])


@router.get("/head", response_model=BlockPublic, summary="The latest block")
def get_head(chain: ChainDep) -> dict[str, Any]:
    """The latest sealed block: its header (height, time, roots, beacon) and transactions."""
    return block_view(chain.head_block())


@router.get(
    "/{height}",
    response_model=BlockPublic,
    summary="The block at a height",
    responses=error_responses(BLOCK_NOT_FOUND, BAD_PARAMETER),
)
def get_block(height: Annotated[int, Path(ge=0)], chain: ChainDep) -> dict[str, Any]:
    """The block at ``height`` with its transactions."""
    return block_view(chain.get_block(height))

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.node.deps import ChainDep
from services.node.schemas import HealthPublic, ParamsPublic, SupplyPublic
from services.node.views import health_view, params_view, supply_view

router = APIRouter(tags=["chain"])


@router.get("/health", response_model=HealthPublic, summary="Liveness and the head")
def health(chain: ChainDep) -> dict[str, Any]:
    """Answers while the node runs: the chain id, the head block's height and hash, how many
    transactions wait for the next block, and the last event id (``/events?since=``)."""
    return health_view(chain)


@router.get("/params", response_model=ParamsPublic, summary="Chain id and ledger parameters")
def get_params(chain: ChainDep) -> dict[str, Any]:
    """The chain id and the ledger parameters (deadlines, stakes, fees) every agent needs."""
    return params_view(chain)


@router.get(
    "/supply", response_model=SupplyPublic, summary="Where every token is (supply invariant)"
)
def get_supply(chain: ChainDep) -> dict[str, Any]:
    """The supply invariant at the head: balances + stakes + escrow + bonds + burned (held) must
    equal genesis + minted (issued); ``holds`` says whether they do (and ``error`` why not)."""
    return supply_view(chain)

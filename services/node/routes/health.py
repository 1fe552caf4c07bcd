from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.node.deps import ChainDep
from services.node.errors import ERROR_RESPONSES
from services.node.schemas import HealthPublic, ParamsPublic, SupplyPublic
from services.node.views import health_view, params_view, supply_view

router = APIRouter(tags=["chain"], responses=ERROR_RESPONSES)


@router.get("/health", response_model=HealthPublic)
def health(chain: ChainDep) -> dict[str, Any]:
    """Liveness and the head of the chain."""
    return health_view(chain)


@router.get("/params", response_model=ParamsPublic)
def get_params(chain: ChainDep) -> dict[str, Any]:
    """The chain id and the ledger parameters (deadlines, stakes, fees) every agent needs."""
    return params_view(chain)


@router.get("/supply", response_model=SupplyPublic)
def get_supply(chain: ChainDep) -> dict[str, Any]:
    """The supply invariant at the head: balances + stakes + escrow + bonds + burned (held) must
    equal genesis + minted (issued); ``holds`` says whether they do (and ``error`` why not)."""
    return supply_view(chain)

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.node.deps import ChainDep
from services.node.schemas import HealthPublic, ParamsPublic
from services.node.views import health_view, params_view

router = APIRouter(tags=["chain"])


@router.get("/health", response_model=HealthPublic)
def health(chain: ChainDep) -> dict[str, Any]:
    """Liveness and the head of the chain."""
    return health_view(chain)


@router.get("/params", response_model=ParamsPublic)
def get_params(chain: ChainDep) -> dict[str, Any]:
    """The chain id and the ledger parameters (deadlines, stakes, fees) every agent needs."""
    return params_view(chain)


@router.get("/supply")
def get_supply(chain: ChainDep) -> dict[str, Any]:
    """The supply invariant at the head: balances + stakes + escrow + bonds + burned must equal
    genesis + minted."""
    from contracts_sim.invariants import compute_supply_report

    report = compute_supply_report(chain.state)
    return {
        "height": int(chain.height),
        "balances": report.balances,
        "stakes": report.stakes,
        "escrow": report.escrow,
        "bonds": report.bonds,
        "burned": report.burned,
        "genesis": report.genesis,
        "minted": report.minted,
        "held": report.held,
        "issued": report.issued,
        "holds": report.held == report.issued,
    }

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.node.deps import ChainDep
from services.node.errors import INVALID_ID, error_responses
from services.node.schemas import AccountPublic
from services.node.views import account_view, parse_address

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.get(
    "/{address}",
    response_model=AccountPublic,
    summary="An account: balance, stake and next nonce",
    responses=error_responses(INVALID_ID),
)
def get_account(address: str, chain: ChainDep) -> dict[str, Any]:
    """Balance, stake (free, locked, unbonding), history counters and the next nonce.
    An address never seen is an empty account, not an error."""
    return account_view(chain, parse_address(address))

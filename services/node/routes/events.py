from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.node.deps import ChainDep, RuntimeDep
from services.node.errors import BAD_PARAMETER, error_responses
from services.node.schemas import EventsPage

router = APIRouter(prefix="/events", tags=["events"])


@router.get(
    "",
    response_model=EventsPage,
    summary="Events after an id (long-poll)",
    responses=error_responses(BAD_PARAMETER),
)
async def get_events(
    runtime: RuntimeDep,
    chain: ChainDep,
    since: Annotated[int, Query(ge=0, description="return events with id > since")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    timeout: Annotated[float, Query(ge=0, le=60, description="long-poll seconds")] = 0.0,
) -> dict[str, Any]:
    """Events after ``since``, oldest first. With ``timeout``, waits up to that long for the
    next block when there is nothing new (long-poll). Each block ends with a ``block`` event."""
    events = await runtime.events(since, limit, timeout)
    last_id = events[-1].id if events else since
    return {"events": [e.to_json() for e in events], "last_id": last_id, "height": chain.height}

"""``GET /events`` (a page of events, long-polled) and ``GET /events/stream`` (every event as it
happens, as server-sent events).

A stream is one request however long it lasts: a follower that keeps it open reads every
block's events without asking again (``services.agents.watch``). Each event is one SSE message
``id: <id>`` / ``event: <kind>`` / ``data: <the event's JSON>``; a comment line
(``: keep-alive``) goes out when ``heartbeat`` seconds pass without one, so a client's read
timeout tells a dead connection from a quiet chain.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from services.node.deps import ChainDep, RuntimeDep
from services.node.errors import BAD_PARAMETER, error_responses
from services.node.schemas import EventsPage

router = APIRouter(prefix="/events", tags=["events"])

STREAM_PAGE: Final = 1000
KEEP_ALIVE: Final = ": keep-alive\n\n"


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


def sse_message(event_json: dict[str, Any]) -> str:
    """One server-sent event: its id, its kind and its JSON on one ``data`` line."""
    data = json.dumps(event_json, separators=(",", ":"))
    return f"id: {event_json['id']}\nevent: {event_json['kind']}\ndata: {data}\n\n"


@router.get(
    "/stream",
    summary="Every event after an id, as it happens (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"},
        **error_responses(BAD_PARAMETER),
    },
)
async def stream_events(
    request: Request,
    runtime: RuntimeDep,
    since: Annotated[int, Query(ge=0, description="send events with id > since")] = 0,
    heartbeat: Annotated[
        float, Query(gt=0, le=60, description="seconds of silence before a keep-alive comment")
    ] = 15.0,
) -> StreamingResponse:
    """The events after ``since``, oldest first, then each new one as its block is sealed,
    until the client disconnects: ``GET /events`` without asking again. Counted in
    ``/metrics`` as ``proofnet_event_streams_opened_total`` when it opens."""
    runtime.metrics.event_streams_opened.inc()

    async def messages() -> AsyncIterator[str]:
        cursor = since
        while not await request.is_disconnected():
            events = await runtime.events(cursor, STREAM_PAGE, heartbeat)
            if not events:
                yield KEEP_ALIVE
                continue
            for event in events:
                yield sse_message(event.to_json())
            cursor = events[-1].id

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

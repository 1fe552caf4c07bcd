"""``/explorer``: the page, its three static files, and the one JSON read model it draws.

The assets ship inside the package (``static/``): no CDN, so the page works offline. The
routes stay out of the OpenAPI schema: they are a UI, not part of the node's API.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from services.node.deps import ChainDep
from services.node.explorer.overview import overview

router = APIRouter(prefix="/explorer", include_in_schema=False)

ASSETS: Final = {
    "explorer.js": "text/javascript; charset=utf-8",
    "explorer.css": "text/css; charset=utf-8",
}


def _asset(name: str) -> bytes:
    return resources.files("services.node.explorer").joinpath("static", name).read_bytes()


@router.get("", response_class=HTMLResponse)
def page() -> HTMLResponse:
    """The explorer page (it fetches ``/explorer/api/overview`` and follows ``/events``)."""
    return HTMLResponse(_asset("index.html"), headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
def asset(name: str) -> Response:
    """One of the page's assets (a fixed list: nothing else in the package is served)."""
    if name not in ASSETS:
        raise HTTPException(404, f"the explorer has no asset {name!r}")
    return Response(_asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


@router.get("/api/overview")
async def get_overview(
    chain: ChainDep, blocks: Annotated[int, Query(ge=1, le=200)] = 20
) -> dict[str, Any]:
    """Blocks, accounts, jobs with their lifecycle, disputes with their timelines."""
    return await run_in_threadpool(overview, chain, blocks)

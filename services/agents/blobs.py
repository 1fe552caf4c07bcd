"""Where a verifier (or a submitter) gets a solver's data: its leaf list and checkpoint blobs.

``BlobSource`` is the interface; ``LocalBlobSource`` asks in-process solver agents directly,
``HttpBlobSource`` asks a solver's HTTP endpoint (``GET /jobs/{id}/leaves``,
``GET /blobs/{id}/{hash}``).
Nothing fetched is trusted: callers check leaves against the committed root and blobs against
their hash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx


class BlobSource(Protocol):
    def leaves(self, solver: str, job_id: str) -> list[bytes] | None: ...

    def blob(self, solver: str, job_id: str, entry: bytes) -> bytes | None: ...

    def model(self, solver: str, job_id: str) -> bytes | None: ...


class LocalBlobSource:
    """In-process: solver agents registered by address."""

    def __init__(self) -> None:
        self.solvers: dict[str, Any] = {}

    def register(self, agent: Any) -> None:
        self.solvers[agent.address] = agent

    def leaves(self, solver: str, job_id: str) -> list[bytes] | None:
        agent = self.solvers.get(solver)
        return None if agent is None else agent.serve_leaves(job_id)

    def blob(self, solver: str, job_id: str, entry: bytes) -> bytes | None:
        agent = self.solvers.get(solver)
        return None if agent is None else agent.serve_blob(job_id, entry)

    def model(self, solver: str, job_id: str) -> bytes | None:
        agent = self.solvers.get(solver)
        return None if agent is None else agent.serve_model(job_id)


class HttpBlobSource:
    """Over HTTP: ``endpoint_of(solver_address)`` names the solver's base URL."""

    def __init__(self, endpoint_of: Callable[[str], str | None], timeout: float = 10.0) -> None:
        self.endpoint_of = endpoint_of
        self.http = httpx.Client(timeout=timeout)

    @classmethod
    def from_chain(cls, client: Any, timeout: float = 10.0) -> HttpBlobSource:
        """Resolve each solver's URL from the endpoint it announced on chain (set_endpoint)."""
        return cls(lambda address: client.get_account(address).get("endpoint") or None, timeout)

    def _get(self, solver: str, path: str) -> httpx.Response | None:
        base = self.endpoint_of(solver)
        if not base:
            return None
        try:
            response = self.http.get(base.rstrip("/") + path)
        except httpx.HTTPError:
            return None
        return response if response.status_code == 200 else None

    def leaves(self, solver: str, job_id: str) -> list[bytes] | None:
        response = self._get(solver, f"/jobs/{job_id}/leaves")
        if response is None:
            return None
        try:
            return [bytes.fromhex(h) for h in response.json()["leaves"]]
        except (ValueError, KeyError, TypeError):
            return None

    def blob(self, solver: str, job_id: str, entry: bytes) -> bytes | None:
        response = self._get(solver, f"/blobs/{job_id}/{entry.hex()}")
        return None if response is None else response.content

    def model(self, solver: str, job_id: str) -> bytes | None:
        response = self._get(solver, f"/jobs/{job_id}/model")
        return None if response is None else response.content

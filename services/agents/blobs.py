"""Where a verifier (or a submitter) gets a solver's data: its leaf list and checkpoint blobs.

``BlobSource`` is the interface; ``LocalBlobSource`` asks in-process solver agents directly,
``HttpBlobSource`` asks a solver's HTTP endpoint (``GET /jobs/{id}/leaves``,
``GET /blobs/{id}/{hash}``, ``GET /jobs/{id}/model``).

Nothing fetched is trusted. Callers say how much they expect (the exact leaf count, the state
blob's size for the job's spec, ``protocol.layout.state_blob_size``) and get ``None`` —
*withheld* — for anything else: a body over its byte cap, a request past its total deadline, a
refused endpoint (``endpoints``), a redirect, a non-200 answer, a leaf list that is not exactly
``count`` 32-byte hex strings. A withheld item is evidence against the solver (the verifier
challenges), never a crash or an unbounded wait.
Callers still check leaves against the committed root and blobs against their hash.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from services.agents.deadline_transport import deadline_transport, within_deadline
from services.agents.endpoints import (
    Resolver,
    resolve_endpoint,
    system_resolver,
)
from services.agents.views import decode_account, decode_record
from services.client import ChainClient
from services.errors import EndpointRefusedError, MalformedAnswerError

log = logging.getLogger("proofnet.blobs")

DEFAULT_DEADLINE_S = 30.0  # total time for one request: connect, headers and every body byte
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0  # one socket read, itself cut to the time left before the deadline
LEAF_HEX_CHARS = 64
LEAVES_OVERHEAD_BYTES = 1024  # '{"job_id": ..., "leaves": [...]}' around the leaf strings
_LEAF_HEX = re.compile(r"[0-9a-f]{64}")


def leaves_body_cap(count: int) -> int:
    """The most bytes a leaf list of ``count`` leaves can take as JSON (quotes and commas)."""
    return count * (LEAF_HEX_CHARS + 8) + LEAVES_OVERHEAD_BYTES


@dataclass(frozen=True)
class _LeafList:
    """A solver's ``/jobs/{id}/leaves`` document (``job_id`` may be left out)."""

    job_id: str
    leaves: tuple[str, ...]


def parse_leaves(body: bytes, job_id: str, count: int) -> list[bytes] | None:
    """Exactly ``count`` lowercase 32-byte hex leaves for ``job_id``, or None."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: '[[[[...' nested past the limit
        return None
    if not isinstance(document, dict):
        return None
    try:
        served = decode_record(_LeafList, {"job_id": job_id, **document}, "leaf list")
    except MalformedAnswerError:
        return None
    if served.job_id != job_id or len(served.leaves) != count:
        return None
    if not all(_LEAF_HEX.fullmatch(h) for h in served.leaves):
        return None
    return [bytes.fromhex(h) for h in served.leaves]


class BlobSource(Protocol):
    def leaves(self, solver: str, job_id: str, count: int) -> list[bytes] | None: ...

    def blob(self, solver: str, job_id: str, entry: bytes, max_bytes: int) -> bytes | None: ...

    def model(self, solver: str, job_id: str, max_bytes: int) -> bytes | None: ...


class LocalBlobSource:
    """In-process: solver agents registered by address (same limits as over HTTP)."""

    def __init__(self) -> None:
        self.solvers: dict[str, Any] = {}

    def register(self, agent: Any) -> None:
        self.solvers[agent.address] = agent

    def leaves(self, solver: str, job_id: str, count: int) -> list[bytes] | None:
        agent = self.solvers.get(solver)
        served = None if agent is None else agent.serve_leaves(job_id)
        return served if served is not None and len(served) == count else None

    def blob(self, solver: str, job_id: str, entry: bytes, max_bytes: int) -> bytes | None:
        agent = self.solvers.get(solver)
        served = None if agent is None else agent.serve_blob(job_id, entry)
        return served if served is not None and len(served) <= max_bytes else None

    def model(self, solver: str, job_id: str, max_bytes: int) -> bytes | None:
        agent = self.solvers.get(solver)
        served = None if agent is None else agent.serve_model(job_id)
        return served if served is not None and len(served) <= max_bytes else None


@dataclass(frozen=True)
class Fetched:
    """One bounded GET: the body, or None with the reason it was withheld."""

    body: bytes | None
    bytes_read: int = 0
    failure: str | None = None


class BoundedFetcher:
    """GETs from endpoints other parties announced, bounded in bytes and in total time.

    The body is streamed and dropped once it passes ``max_bytes`` (at most one socket read,
    64 KiB, is read past the cap). The deadline holds for the whole exchange — connect,
    request, status line, headers and body — at the socket (``deadline_transport``): every
    socket operation gets at most the time left, so a peer that drips its headers or its body
    a byte at a time is cut off at ``deadline``. Redirects are not followed, no proxy or netrc
    from the environment is used, the body is taken raw (no decompression bombs), and the
    connection goes to the address the endpoint policy checked.
    """

    def __init__(
        self,
        *,
        allow_private_endpoints: bool = False,
        deadline: float = DEFAULT_DEADLINE_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.allow_private_endpoints = allow_private_endpoints
        self.deadline = deadline
        self.resolver = resolver
        read = min(read_timeout, deadline)
        timeout = httpx.Timeout(connect=connect_timeout, read=read, write=read, pool=read)
        self.http = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            # A given transport (a test's MockTransport) has no sockets to hold to the deadline.
            transport=deadline_transport() if transport is None else transport,
        )

    def _withheld(self, url: str, failure: str, bytes_read: int = 0) -> Fetched:
        log.warning("fetch %s withheld: %s", url, failure)
        return Fetched(None, bytes_read, failure)

    def get(self, url: str, max_bytes: int) -> Fetched:
        """GET ``url``: its body if the answer is a 200 of at most ``max_bytes`` in time."""
        try:
            target = resolve_endpoint(
                url, allow_private=self.allow_private_endpoints, resolver=self.resolver
            )
        except EndpointRefusedError as exc:
            return self._withheld(url, f"endpoint refused: {exc.message}")
        headers = {"Host": target.host_header, "Accept-Encoding": "identity"}
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        deadline = time.monotonic() + self.deadline
        chunks: list[bytes] = []
        read = 0
        try:
            with (
                within_deadline(deadline),
                self.http.stream(
                    "GET", target.url, headers=headers, extensions=extensions
                ) as response,
            ):
                if response.status_code != 200:
                    return self._withheld(url, f"status {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    return self._withheld(url, f"declares {declared} bytes > cap {max_bytes}")
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read > max_bytes:
                        return self._withheld(url, f"body over cap {max_bytes}", read)
                    if time.monotonic() > deadline:
                        return self._withheld(url, f"past the {self.deadline:g} s deadline", read)
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException) and time.monotonic() >= deadline:
                return self._withheld(url, f"past the {self.deadline:g} s deadline", read)
            return self._withheld(url, f"transport: {type(exc).__name__}: {exc}", read)
        return Fetched(b"".join(chunks), read)


class HttpBlobSource:
    """Over HTTP: ``endpoint_of(solver_address)`` names the solver's base URL."""

    def __init__(
        self, endpoint_of: Callable[[str], str | None], fetcher: BoundedFetcher | None = None
    ) -> None:
        self.endpoint_of = endpoint_of
        self.fetcher = fetcher or BoundedFetcher()

    @classmethod
    def from_chain(
        cls, client: ChainClient, fetcher: BoundedFetcher | None = None
    ) -> HttpBlobSource:
        """Resolve each solver's URL from the endpoint it announced on chain (set_endpoint)."""

        def endpoint_of(address: str) -> str | None:
            return decode_account(client.get_account(address)).endpoint or None

        return cls(endpoint_of, fetcher)

    def _get(self, solver: str, path: str, max_bytes: int) -> bytes | None:
        base = self.endpoint_of(solver)
        if not base:
            return None
        return self.fetcher.get(base.rstrip("/") + path, max_bytes).body

    def leaves(self, solver: str, job_id: str, count: int) -> list[bytes] | None:
        body = self._get(solver, f"/jobs/{job_id}/leaves", leaves_body_cap(count))
        return None if body is None else parse_leaves(body, job_id, count)

    def blob(self, solver: str, job_id: str, entry: bytes, max_bytes: int) -> bytes | None:
        return self._get(solver, f"/blobs/{job_id}/{entry.hex()}", max_bytes)

    def model(self, solver: str, job_id: str, max_bytes: int) -> bytes | None:
        return self._get(solver, f"/jobs/{job_id}/model", max_bytes)

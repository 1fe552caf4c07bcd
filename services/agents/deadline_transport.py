"""An HTTP transport whose every socket operation stops at the request's total deadline.

httpx bounds each socket operation (one connect, one read, one write) but not their sum, so a
peer that sends one byte just inside each read timeout holds a fetch open for as long as it
likes: while the body streams, and — out of the caller's reach — while the status line and
headers are read (16 KiB of header bytes, one per read timeout, is about 45 hours). So the
deadline is enforced below httpx, on the socket: ``deadline_transport()`` builds an httpx
transport whose network backend gives every connect, TLS handshake, read and write at most the
time left until the deadline of the request in progress (``within_deadline``), and refuses to
start one once it has passed. A socket operation's timeout is a bound on that one call (for TLS
too: CPython turns the socket timeout into a deadline for the whole SSL call), so the whole
exchange — connect, request, status line, headers, body — ends by the deadline, with no watchdog
thread and no polling.

The connection still goes to the address the caller names (the one the endpoint policy
checked): the backend connects exactly where httpcore tells it to, and does no lookup of its
own.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

# The monotonic time by which the request in progress on this thread (or task) must be done;
# None outside ``within_deadline``, where operations keep httpx's own per-operation timeouts.
_DEADLINE: ContextVar[float | None] = ContextVar("proofnet_fetch_deadline", default=None)


@contextmanager
def within_deadline(deadline: float) -> Iterator[None]:
    """Every socket operation of a ``deadline_transport`` inside this block ends by ``deadline``
    (a ``time.monotonic()`` value)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None, on_expiry: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` cut to the time left before the deadline; raises ``on_expiry`` once it is
    gone, so no operation starts after the deadline (a zero socket timeout would not block)."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise on_expiry("past the total deadline of the request")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes each get at most the time left to the deadline.

    The deadline is read at each call, not fixed when the connection opened, so a pooled
    connection reused by a later request answers to that request's deadline.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # A GET's request head fits the kernel's send buffer, so this is one bounded send.
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's blocking-socket backend, with every connection a ``_DeadlineStream``."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("fetches from other parties go over TCP only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_transport() -> httpx.HTTPTransport:
    """An httpx transport (no proxy, no environment settings) over ``_DeadlineBackend``.

    httpx has no public way to choose a transport's network backend, so its connection pool is
    replaced by one built the same way (default TLS context and limits) over the backend.
    """
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=100,  # httpx's default limits
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=_DeadlineBackend(),
    )
    return transport

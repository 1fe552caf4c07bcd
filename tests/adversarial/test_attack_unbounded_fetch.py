"""unbounded-fetch: a solver's endpoint answers a verifier's GET with a body far larger than any
state blob, or drips it (or its headers) a byte at a time, or is announced at an address inside
the verifier's own network (SSRF). Every fetch is bounded: the verifier reads at most its cap
plus one socket read, gives up at its total deadline however slowly bytes (of headers or body)
arrive, and never connects to a refused address; each of these is *withheld* data (None), which
the verifier challenges."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from services.agents.blobs import BoundedFetcher, HttpBlobSource

pytestmark = pytest.mark.adversarial

CAP = 1 << 20  # 1 MiB
READ = 64 << 10  # one socket read (httpcore's read size)
HUGE = 1 << 30  # 1 GiB, streamed, never allocated
KERNEL_SLACK = 32 << 20  # what loopback socket buffers can hold beyond what the client read
DRIP_BYTES = 50  # one byte every DRIP_PAUSE: 10 s in all, well past the deadline
DRIP_PAUSE = 0.2
ZEROS = bytes(READ)
STATUS_LINE = b"HTTP/1.1 200 OK\r\n"


@dataclass
class Observed:
    """What the hostile server saw: bytes it got into the socket, and whether the peer left."""

    sent: int = 0
    hosts: list[str] = field(default_factory=list)
    peer_closed: threading.Event = field(default_factory=threading.Event)


class HostileHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.0, so a body without Content-Length runs until the server closes it."""

    observed: Observed

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.observed.hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        if self.path == "/declared":
            self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        try:
            if self.path == "/drip":
                self._drip()
            else:
                self._flood()
        except OSError:  # the fetcher closed the connection
            self.observed.peer_closed.set()

    def _flood(self) -> None:
        while self.observed.sent < HUGE:
            self.wfile.write(ZEROS)
            self.observed.sent += len(ZEROS)

    def _drip(self) -> None:
        for _ in range(DRIP_BYTES):
            self.wfile.write(b"x")
            self.wfile.flush()
            self.observed.sent += 1
            if self.observed.peer_closed.wait(DRIP_PAUSE):
                return


@pytest.fixture
def hostile() -> Iterator[tuple[str, Observed]]:
    observed = Observed()
    handler = type("Handler", (HostileHandler,), {"observed": observed})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", observed
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_a_body_far_over_the_cap_is_dropped_after_one_read_past_it(
    hostile: tuple[str, Observed],
) -> None:
    url, observed = hostile
    fetched = BoundedFetcher(allow_private_endpoints=True).get(f"{url}/flood", CAP)
    assert fetched.body is None
    assert fetched.failure is not None and "over cap" in fetched.failure
    assert CAP < fetched.bytes_read <= CAP + READ
    assert observed.peer_closed.wait(10), "the fetcher hung up"
    assert observed.sent < CAP + READ + KERNEL_SLACK  # nowhere near the 1 GiB on offer


def test_a_declared_length_over_the_cap_is_refused_before_reading(
    hostile: tuple[str, Observed],
) -> None:
    url, observed = hostile
    fetched = BoundedFetcher(allow_private_endpoints=True).get(f"{url}/declared", CAP)
    assert fetched.body is None
    assert fetched.bytes_read == 0
    assert observed.peer_closed.wait(10)


def test_a_drip_feed_is_cut_off_at_the_total_deadline(hostile: tuple[str, Observed]) -> None:
    url, observed = hostile
    fetcher = BoundedFetcher(allow_private_endpoints=True, deadline=1.0, read_timeout=5.0)
    fetched = fetcher.get(f"{url}/drip", CAP)
    assert fetched.body is None
    assert fetched.failure is not None and "deadline" in fetched.failure
    assert observed.peer_closed.wait(10), "the fetcher hung up before the drip ended"
    assert observed.sent < DRIP_BYTES


@contextmanager
def header_drip_server() -> Iterator[tuple[str, Observed]]:
    """One connection: the status line, then a header one byte per DRIP_PAUSE (10 s in all);
    stops at the end of the drip or as soon as the client hangs up."""
    observed = Observed()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)  # bounded even if no client ever comes

    def drip_headers() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(10)
            connection.recv(READ)  # the request
            connection.sendall(STATUS_LINE + b"X-Drip: ")
            connection.settimeout(DRIP_PAUSE)
            for _ in range(DRIP_BYTES):
                try:
                    connection.sendall(b"x")
                    observed.sent += 1
                    if connection.recv(1) == b"":  # the client sends nothing more: a hang-up
                        break
                except TimeoutError:  # the pause between two bytes
                    continue
                except OSError:  # reset by the client
                    break
            observed.peer_closed.set()

    thread = threading.Thread(target=drip_headers, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", observed
    finally:
        thread.join(timeout=DRIP_BYTES * DRIP_PAUSE + 10)
        listener.close()


def test_a_header_drip_is_cut_off_at_the_total_deadline() -> None:
    """Each header byte arrives within the read timeout; only the total deadline stops it."""
    with header_drip_server() as (url, observed):
        fetcher = BoundedFetcher(allow_private_endpoints=True, deadline=1.0, read_timeout=5.0)
        fetched = fetcher.get(f"{url}/jobs/x/leaves", CAP)
        assert fetched.body is None
        assert fetched.failure is not None and "deadline" in fetched.failure
        assert observed.peer_closed.wait(10), "the fetcher hung up"
    assert observed.sent < DRIP_BYTES // 2  # cut off long before the drip's end


def test_a_verifier_reads_a_flooded_blob_as_withheld(hostile: tuple[str, Observed]) -> None:
    url, _observed = hostile
    source = HttpBlobSource(
        lambda solver: url + "/flood", BoundedFetcher(allow_private_endpoints=True)
    )
    assert source.blob("0x" + "11" * 20, "ab" * 32, b"\x00" * 32, CAP) is None
    assert source.leaves("0x" + "11" * 20, "ab" * 32, 4) is None


def test_a_name_is_connected_to_at_the_address_that_was_checked(
    hostile: tuple[str, Observed],
) -> None:
    """No second DNS lookup at connect time: a rebinding answer cannot redirect the GET."""
    url, observed = hostile
    port = url.rsplit(":", 1)[1]
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    fetcher = BoundedFetcher(allow_private_endpoints=True, resolver=resolver)
    fetched = fetcher.get(f"http://solver.test:{port}/declared", CAP)
    assert fetched.failure is not None and "declares" in fetched.failure
    assert lookups == ["solver.test"]
    assert observed.hosts == [f"solver.test:{port}"]


@pytest.mark.parametrize(
    ("url", "allow_private"),
    [
        ("http://169.254.169.254/latest/meta-data/", True),
        ("http://[fe80::1]:8601/", True),
        ("http://metadata.internal/", True),  # a name that resolves to the metadata address
        ("http://10.0.0.5:5432/", False),
        ("http://127.0.0.1:6379/", False),
        ("http://db.internal:5432/", False),  # a name that resolves to a private address
    ],
)
def test_refused_endpoints_are_never_connected_to(url: str, allow_private: bool) -> None:
    connections: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        connections.append(request)
        return httpx.Response(200, content=b"secret")

    def resolver(host: str, port: int) -> list[str]:
        return {"metadata.internal": ["169.254.169.254"], "db.internal": ["10.0.0.5"]}[host]

    fetcher = BoundedFetcher(
        allow_private_endpoints=allow_private,
        resolver=resolver,
        transport=httpx.MockTransport(transport),
    )
    fetched = fetcher.get(url, CAP)
    assert fetched.body is None
    assert fetched.failure is not None and fetched.failure.startswith("endpoint refused")
    assert connections == []


def test_redirects_are_not_followed() -> None:
    connections: list[str] = []

    def transport(request: httpx.Request) -> httpx.Response:
        connections.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/"})

    fetcher = BoundedFetcher(
        resolver=lambda h, p: ["8.8.8.8"], transport=httpx.MockTransport(transport)
    )
    fetched = fetcher.get("http://solver.example/blobs/x", CAP)
    assert fetched.body is None
    assert connections == ["http://8.8.8.8/blobs/x"]

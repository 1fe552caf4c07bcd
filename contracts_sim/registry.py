"""The endpoint registry: where an account serves data.

A solver announces the URL at which verifiers fetch its leaf lists and checkpoint blobs, and
submitters its trained models. The ledger records it; data availability itself is enforced by
the dispute game (a solver that does not serve the pre-state loses on a deadline).

Every verifier sends GET requests to the URL a solver chose, so the URL is a request a stranger
makes on the verifier's behalf (server-side request forgery). The ledger allows only a plain
origin and path (``check_endpoint_url``): no userinfo, query or fragment, and no IP literal that
is link-local (cloud metadata at 169.254.169.254), multicast, unspecified, broadcast or reserved.
Loopback and private literals stay allowed here (local testnets use 127.0.0.1, compose uses
private addresses); the agents' own connect-time policy decides whether to reach them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import Final

from contracts_sim.env import TxContext
from contracts_sim.events import Event, make_event
from contracts_sim.exceptions import InvalidEndpointError
from contracts_sim.params import Params
from contracts_sim.state import LedgerState
from contracts_sim.transactions import SetEndpointBody

MAX_ENDPOINT_LENGTH: Final = SetEndpointBody.MAX_URL_LENGTH
MAX_HOST_LENGTH: Final = 253
_ENDPOINT: Final = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[a-z0-9._~/-]*)?",
    re.IGNORECASE,
)
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL: Final = re.compile(r"[0-9]+|0x[0-9a-f]*")


def check_endpoint_url(url: str) -> str:
    """``url`` in canonical form (scheme and host lowercase, IPv6 compressed, port as a plain
    number), or raise ``InvalidEndpointError`` saying which part is refused.

    Grammar: ``http[s]://host[:port][/path]``; host a DNS name of letter-digit-hyphen labels or
    an IPv4 / bracketed IPv6 literal; port 1-65535; path of unreserved characters and ``/``;
    at most ``MAX_ENDPOINT_LENGTH`` characters.
    """
    if len(url) > MAX_ENDPOINT_LENGTH:
        raise InvalidEndpointError(url, f"is longer than {MAX_ENDPOINT_LENGTH} characters")
    match = _ENDPOINT.fullmatch(url)
    if match is None:
        raise InvalidEndpointError(
            url, "must be http(s)://host[:port][/path] (no userinfo, query, fragment or spaces)"
        )
    scheme, port, path = match["scheme"].lower(), match["port"], match["path"] or ""
    host = _canonical_host(url, match["host"].lower())
    if port is not None and not 1 <= int(port) <= 65535:
        raise InvalidEndpointError(url, f"port {port} is not between 1 and 65535")
    return f"{scheme}://{host}" + ("" if port is None else f":{int(port)}") + path


def _canonical_host(url: str, host: str) -> str:
    if host.startswith("["):
        return f"[{_check_ip(url, _parse_ip(url, host[1:-1], ipaddress.IPv6Address))}]"
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):  # resolvers read it as an IPv4 address (WHATWG)
        return str(_check_ip(url, _parse_ip(url, host, ipaddress.IPv4Address)))
    if len(host) > MAX_HOST_LENGTH or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidEndpointError(url, f"host {host!r} is not a DNS name of LDH labels")
    return host


def _parse_ip(
    url: str, text: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return kind(text)  # strict: dotted-quad decimal IPv4 without leading zeros, no zone
    except ValueError as exc:
        raise InvalidEndpointError(url, f"host {text!r} is not a canonical IP address") from exc


def _check_ip(
    url: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Refuse literals no data server has: link-local, multicast, unspecified, broadcast,
    reserved (IPv4-mapped IPv6 is judged by its IPv4 address)."""
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    judged = mapped if mapped is not None else ip
    if judged.is_loopback:
        return ip
    if (
        judged.is_link_local
        or judged.is_multicast
        or judged.is_unspecified
        or judged.is_reserved
        or judged == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise InvalidEndpointError(url, f"{ip} is a link-local, multicast or reserved address")
    return ip


def process_set_endpoint(
    state: LedgerState, ctx: TxContext, body: SetEndpointBody, params: Params
) -> list[Event]:
    """Record ``url`` as the sender's data endpoint ("" withdraws it)."""
    # The URL is a plain origin and path a verifier may be sent to (or "" to withdraw).
    url = check_endpoint_url(body.url) if body.url else ""
    account = state.get_account(ctx.sender)
    state.set_account(ctx.sender, replace(account, endpoint=url))
    return [make_event("endpoint_set", address=ctx.sender, url=url)]

"""Where an agent may connect: the policy for endpoints another party announced (SSRF).

A solver names its data endpoint on chain (``set_endpoint``), and every verifier, and every
submitter running ``proofnet download``, sends GETs there. Left unchecked, a solver could point
them at a cloud metadata service (169.254.169.254), a database on the verifier's own host or
anything else on its private network. So before connecting an agent resolves the endpoint's
host and checks every address it resolves to:

* never: link-local (169.254.0.0/16, fe80::/10), multicast, unspecified, reserved and broadcast
  addresses — nothing a solver serves from lives there;
* only with ``allow_private=True`` (``--allow-private-endpoints``): loopback, private and other
  non-global ranges — a local testnet or a compose network, where solvers are on private
  addresses by design.

The agent then connects to the address it checked, not to the name (``ResolvedEndpoint``), so a
DNS answer that changes between the check and the connection (rebinding) does not redirect it.

What remains: the system resolver's own timeouts bound the lookup, not the fetch deadline; and an
allowed public address is, of course, still whatever the solver wants it to be — every byte it
serves is checked and bounded by the caller (``services.agents.blobs``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from services.errors import EndpointRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ResolvedEndpoint:
    """A URL whose host has been resolved to one checked address.

    ``url`` names the address itself; ``host_header`` and ``sni_hostname`` carry the original
    name, so virtual hosting and TLS certificate checks still see the name the solver announced.
    """

    url: httpx.URL
    host_header: str
    sni_hostname: str | None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), as text."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise EndpointRefusedError(f"cannot resolve {host!r}: {exc}") from exc
    return [str(info[4][0]) for info in infos]


def _unwrapped(address: IPAddress) -> IPAddress:
    """An IPv4 address carried inside IPv6 (``::ffff:a.b.c.d``) is judged as the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_address(address: IPAddress, *, allow_private: bool) -> None:
    """Raise EndpointRefusedError unless an agent may connect to ``address``."""
    address = _unwrapped(address)
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        raise EndpointRefusedError(f"{address} is a link-local, multicast or unspecified address")
    private = address.is_loopback or not address.is_global  # ::1 also counts as reserved
    if address.is_reserved and not address.is_loopback:  # 240.0.0.0/4 holds the broadcast
        raise EndpointRefusedError(f"{address} is a reserved address")
    if private and not allow_private:
        raise EndpointRefusedError(
            f"{address} is a loopback or private address (run with --allow-private-endpoints "
            "on a local or private network)"
        )


def _checked_url(url: str) -> httpx.URL:
    """The URL, refused unless it is a plain http(s) URL: no credentials, query or fragment."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise EndpointRefusedError(f"not a URL: {url!r}") from exc
    if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
        raise EndpointRefusedError(f"not an http(s) URL with a host: {url!r}")
    if parsed.userinfo or parsed.query or parsed.fragment:
        raise EndpointRefusedError(f"credentials, query or fragment in endpoint {url!r}")
    return parsed


def resolve_endpoint(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> ResolvedEndpoint:
    """Check ``url`` and the addresses its host resolves to; the URL to connect to.

    Every resolved address must pass (a name that also resolves to a refused address is
    refused), and the first is used, so the connection goes where the check looked.
    """
    parsed = _checked_url(url)
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    try:
        literal: IPAddress | None = ipaddress.ip_address(parsed.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(parsed.host, port)]
        except ValueError as exc:
            raise EndpointRefusedError(f"{parsed.host!r} resolved to a non-address") from exc
    if not addresses:
        raise EndpointRefusedError(f"{parsed.host!r} resolves to no address")
    for address in addresses:
        check_address(address, allow_private=allow_private)
    host_header = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    return ResolvedEndpoint(
        url=parsed.copy_with(host=str(addresses[0])),
        host_header=host_header,
        sni_hostname=parsed.host if parsed.scheme == "https" and literal is None else None,
    )

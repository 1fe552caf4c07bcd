"""Where agents connect and what they accept: the endpoint policy (SSRF), strict leaf lists,
and the state blob size every fetch is capped at."""

from __future__ import annotations

import ipaddress

import pytest

from protocol.exact import encode_state, init
from protocol.layout import state_blob_size
from protocol.spec import JobSpec, parse_spec
from services.agents.blobs import leaves_body_cap, parse_leaves
from services.agents.endpoints import (
    check_address,
    resolve_endpoint,
)
from services.errors import EndpointRefusedError
from tests.conftest import tiny_spec_dict

NEVER = [
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "224.0.0.1",
    "ff02::1",
    "0.0.0.0",
    "::",
    "255.255.255.255",
    "240.0.0.1",
    "::ffff:169.254.169.254",  # IPv4 inside IPv6
]
PRIVATE = ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "100.64.0.1", "fc00::1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", NEVER)
@pytest.mark.parametrize("allow_private", [False, True])
def test_link_local_multicast_unspecified_and_reserved_are_never_allowed(
    address: str, allow_private: bool
) -> None:
    with pytest.raises(EndpointRefusedError):
        check_address(ipaddress.ip_address(address), allow_private=allow_private)


@pytest.mark.parametrize("address", PRIVATE)
def test_loopback_and_private_addresses_need_the_operators_consent(address: str) -> None:
    with pytest.raises(EndpointRefusedError, match="allow-private-endpoints"):
        check_address(ipaddress.ip_address(address), allow_private=False)
    check_address(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=False)


def test_a_name_is_refused_if_any_of_its_addresses_is() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["8.8.8.8", "169.254.169.254"]

    with pytest.raises(EndpointRefusedError):
        resolve_endpoint("http://solver.example/", allow_private=True, resolver=resolver)


def test_the_connection_goes_to_the_checked_address_under_the_announced_name() -> None:
    def resolver(host: str, port: int) -> list[str]:
        assert host == "solver.example"
        return ["93.184.216.34"]

    target = resolve_endpoint(
        "http://solver.example:8601/base", allow_private=False, resolver=resolver
    )
    assert str(target.url) == "http://93.184.216.34:8601/base"
    assert target.host_header == "solver.example:8601"
    assert target.sni_hostname is None
    tls = resolve_endpoint("https://solver.example/", allow_private=False, resolver=resolver)
    assert tls.sni_hostname == "solver.example"  # the certificate is checked against the name


@pytest.mark.parametrize(
    "url",
    [
        "ftp://8.8.8.8/",
        "file:///etc/passwd",
        "http://user:pw@8.8.8.8/",
        "http://8.8.8.8/?x=1",
        "http://8.8.8.8/#frag",
        "not a url",
        "http:///nohost",
    ],
)
def test_only_plain_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(EndpointRefusedError):
        resolve_endpoint(url, allow_private=True, resolver=lambda host, port: ["8.8.8.8"])


def test_an_unresolvable_name_is_refused() -> None:
    with pytest.raises(EndpointRefusedError):
        resolve_endpoint("http://no-such-host.invalid/", allow_private=True)


JOB = "ab" * 32
LEAF = "cd" * 32


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[" * 100_000,  # nested past the recursion limit
        b'{"leaves": "' + LEAF.encode() + b'"}',
        b'{"leaves": ["' + LEAF.encode() + b'"]}',  # one leaf short
        b'{"leaves": ["' + LEAF.encode() + b'", 7]}',
        b'{"leaves": ["' + LEAF.encode() + b'", "' + LEAF.upper().encode() + b'"]}',
        b'{"leaves": ["' + LEAF.encode() + b'", "' + LEAF[:-2].encode() + b'"]}',
        f'{{"job_id": "{"ef" * 32}", "leaves": ["{LEAF}", "{LEAF}"]}}'.encode(),  # other job
        b'{"leaves": [1' + b"0" * 5000 + b"]}",
    ],
)
def test_a_leaf_list_is_exactly_count_lowercase_32_byte_hex_strings(body: bytes) -> None:
    assert parse_leaves(body, JOB, 2) is None


def test_a_well_formed_leaf_list_parses_and_fits_its_cap() -> None:
    body = f'{{"job_id":"{JOB}","leaves":["{LEAF}","{LEAF}"]}}'.encode()
    assert parse_leaves(body, JOB, 2) == [bytes.fromhex(LEAF)] * 2
    assert len(body) <= leaves_body_cap(2)


@pytest.mark.parametrize("hidden", [[], [16], [32, 8]])
def test_the_blob_cap_is_exactly_the_size_of_a_state_blob(hidden: list[int]) -> None:
    model = {"family": "mlp", "input_dim": 16, "hidden": hidden, "classes": 4}
    spec: JobSpec = parse_spec(tiny_spec_dict(model=model))
    assert state_blob_size(spec) == len(encode_state(init(spec)))

"""small-order-key: a sender signs with a public key of small order or a non-canonical one.

The identity point's key accepts ``R = identity, S = 0`` as a signature of every message under
RFC 8032's cofactorless rule, so its account is one anyone can spend from; other small-order
and non-canonical keys are where Ed25519 libraries disagree (a chain split). The pinned rules
(docs/protocol.md "Signatures") refuse them all; a valid key still signs.
"""

from __future__ import annotations

import pytest

from contracts_sim import crypto
from contracts_sim.crypto import (
    GROUP_ORDER,
    address_of,
    check_public_key,
    key_from_seed,
    verify_signature,
)
from contracts_sim.exceptions import InvalidPublicKeyError, InvalidSignatureError
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import Transaction, signing_bytes

pytestmark = pytest.mark.adversarial

P = 2**255 - 19
IDENTITY = bytes([1]) + bytes(31)
FORGED_BY_ANYONE = IDENTITY + bytes(32)  # R = identity, S = 0: [0]B == R + [k]identity
KNOWN_SMALL_ORDER = {  # libsodium's blocklist, the canonical encodings
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
}


def _encode(point: tuple[int, int, int, int]) -> bytes:
    x, y, z, _ = point
    inverse = pow(z, -1, P)
    x, y = x * inverse % P, y * inverse % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _multiply(point: tuple[int, int, int, int], scalar: int) -> tuple[int, int, int, int]:
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = crypto._add(result, point)
        point = crypto._add(point, point)
        scalar >>= 1
    return result


def torsion_points() -> list[bytes]:
    """The 8 points of small order, derived from the curve: ``[L]Q`` for a point ``Q`` whose
    torsion part has order 8, and its multiples."""
    for y in range(2, 1000):
        decoded = crypto._decode_point(y.to_bytes(32, "little"))
        if isinstance(decoded, str):
            continue
        x, y = decoded
        torsion = _multiply((x, y, 1, x * y % P), GROUP_ORDER)
        points = {_encode(_multiply(torsion, k)) for k in range(8)}
        if len(points) == 8:
            return sorted(points)
    raise AssertionError("no point with a torsion part of order 8")


SMALL_ORDER = torsion_points()
NON_CANONICAL = {
    "y = p (0 again)": P.to_bytes(32, "little"),
    "y = p + 1 (the identity again)": (P + 1).to_bytes(32, "little"),
    "y = 2^255 - 1": (2**255 - 1).to_bytes(32, "little"),
    "x = 0 with the sign bit": (1 | 1 << 255).to_bytes(32, "little"),
}


def test_derived_small_order_points_are_the_known_ones() -> None:
    assert {p.hex() for p in SMALL_ORDER} == KNOWN_SMALL_ORDER


@pytest.mark.parametrize("key", SMALL_ORDER, ids=lambda k: k.hex()[:8])
def test_small_order_keys_are_refused(key: bytes) -> None:
    assert check_public_key(key) == "it is a point of small order"
    assert not verify_signature(key, b"any message", FORGED_BY_ANYONE)


@pytest.mark.parametrize("key", NON_CANONICAL.values(), ids=list(NON_CANONICAL))
def test_non_canonical_keys_are_refused(key: bytes) -> None:
    assert "non-canonical" in check_public_key(key)
    assert not verify_signature(key, b"any message", FORGED_BY_ANYONE)


def test_points_off_the_curve_are_refused() -> None:
    off_curve = next(
        y.to_bytes(32, "little")
        for y in range(2, 100)
        if isinstance(crypto._decode_point(y.to_bytes(32, "little")), str)
    )
    assert check_public_key(off_curve) == "it is not a point on the curve"


def test_non_canonical_s_is_refused() -> None:
    key = key_from_seed("honest")
    signature = key.sign(b"message")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + GROUP_ORDER).to_bytes(32, "little")
    assert verify_signature(key.public_key, b"message", signature)
    assert not verify_signature(key.public_key, b"message", malleated)


def _forged_transaction(public_key: bytes, body: dict[str, str]) -> Transaction:
    """A transaction from ``public_key``'s account, "signed" without any private key."""
    unsigned = {
        "chain_id": "proofnet-test",
        "sender": address_of(public_key),
        "public_key": public_key.hex(),
        "nonce": 0,
        "kind": "set_endpoint",
        "body": body,
    }
    assert signing_bytes(unsigned)  # the message does not matter to this forgery
    return Transaction.from_json({**unsigned, "signature": FORGED_BY_ANYONE.hex()})


def test_the_chain_refuses_a_transaction_forged_for_the_identity_key() -> None:
    h = LedgerHarness({"alice": 10})
    tx = _forged_transaction(IDENTITY, {"url": "http://attacker.example"})
    error = h.expect_rejected(tx, InvalidPublicKeyError)
    assert error.code == "invalid_public_key"
    assert h.state.get_account(address_of(IDENTITY)).endpoint == ""


@pytest.mark.parametrize(
    "key", [*SMALL_ORDER[1:], *NON_CANONICAL.values()], ids=lambda k: k.hex()[:8]
)
def test_the_chain_refuses_every_refused_key(key: bytes) -> None:
    h = LedgerHarness({"alice": 10})
    h.expect_rejected(_forged_transaction(key, {"url": "http://a.example"}), InvalidPublicKeyError)


def test_a_valid_key_still_signs() -> None:
    h = LedgerHarness({"alice": 10})
    assert check_public_key(h.key("alice").public_key) == ""
    h.send("alice", "set_endpoint", {"url": "http://127.0.0.1:8601"})
    assert h.account("alice").endpoint == "http://127.0.0.1:8601"
    forged = _forged_transaction(h.key("alice").public_key, {"url": "http://a.example"})
    h.expect_rejected(forged, InvalidSignatureError)

"""Accounts are Ed25519 keys (docs/protocol.md, "Signatures").

    address_of(public_key)            "0x" + SHA-256(public key)[:20].hex()   (lowercase)
    generate_key() / key_from_seed()  a PrivateKey
    sign(key, msg) / verify_signature(public_key, msg, signature)
    check_public_key(public_key)      why a key is refused ("" for a valid one)
    remember_verified(public_key, msg, signature)       a verification done elsewhere
    PrivateKey.to_json() / PrivateKey.from_json(data)   file-friendly key material

Ed25519 implementations disagree at the edges (small-order keys, non-canonical encodings,
cofactored or not), so two nodes built on two libraries could split on one transaction. The
rules are pinned in docs/protocol.md "Signatures" and checked here in plain Python before the
library is asked: a key must be a canonical encoding of a point that is not of small order,
``S`` must be below the group order ``L``, and verification is RFC 8032's cofactorless equation
``[S]B == R + [k]A`` (what OpenSSL computes; ``R`` is compared as bytes, so it must be canonical).

Verified signatures are remembered (a bounded memo of exact ``(key, message, signature)``
triples that verified, as Bitcoin Core's signature cache): a node verifies a transaction before
it takes the chain's lock, often in a worker process (``remember_verified`` records what a
worker found), and the rules' check under the lock then costs a lookup. ``verify_signature``
stays the one implementation of the rule; the memo only skips doing it twice for the same bytes.

No I/O here: services decide where key files live.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.hashing import sha256
from protocol.types import Address

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32
ADDRESS_BYTES = 20
_ADDRESS_RE = re.compile(r"0x[0-9a-f]{40}")

# Curve25519 in twisted Edwards form (RFC 8032 §5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p).
_P: Final = 2**255 - 19
_D: Final = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1: Final = pow(2, (_P - 1) // 4, _P)
GROUP_ORDER: Final = 2**252 + 27742317777372353535851937790883648493
"""``L``, the order of the base point; a signature's ``S`` must be below it."""


def is_address(value: object) -> bool:
    """A canonical address: ``0x`` and 40 lowercase hex digits."""
    return isinstance(value, str) and _ADDRESS_RE.fullmatch(value) is not None


def address_of(public_key: bytes) -> Address:
    """The address of an Ed25519 public key: ``0x`` + first 20 bytes of its SHA-256."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
    return Address("0x" + sha256(public_key)[:ADDRESS_BYTES].hex())


class PrivateKey:
    """An Ed25519 signing key with its public key and address."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes")
        self._seed = bytes(seed)
        self._key = Ed25519PrivateKey.from_private_bytes(self._seed)
        self.public_key: bytes = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.address: Address = address_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def seed_hex(self) -> str:
        return self._seed.hex()

    def to_json(self) -> dict[str, str]:
        """Key file contents: the seed plus the public key and address (checked on load)."""
        return {
            "type": "ed25519",
            "seed": self._seed.hex(),
            "public_key": self.public_key.hex(),
            "address": self.address,
        }

    @classmethod
    def from_json(cls, data: Any) -> PrivateKey:
        """Inverse of ``to_json``; raises ValueError on anything inconsistent."""
        if not isinstance(data, dict) or data.get("type") != "ed25519":
            raise ValueError("not an ed25519 key file")
        seed = data.get("seed")
        if not isinstance(seed, str):
            raise ValueError("key file has no seed")
        key = cls(bytes.fromhex(seed))
        if "public_key" in data and data["public_key"] != key.public_key.hex():
            raise ValueError("key file public_key does not match its seed")
        if "address" in data and data["address"] != key.address:
            raise ValueError("key file address does not match its seed")
        return key

    def __repr__(self) -> str:  # never print the seed
        return f"PrivateKey(address={self.address})"


def generate_key() -> PrivateKey:
    """A fresh random key."""
    return PrivateKey(Ed25519PrivateKey.generate().private_bytes_raw())


def key_from_seed(seed: bytes | str) -> PrivateKey:
    """A deterministic key from any seed material (``SHA-256`` of it is the Ed25519 seed).

    For tests and local testnets only: a guessable seed is a stolen key.
    """
    material = seed.encode("utf-8") if isinstance(seed, str) else seed
    return PrivateKey(sha256(b"proofnet/key/v1\x00" + material))


def sign(private_key: PrivateKey, message: bytes) -> bytes:
    return private_key.sign(message)


# --- key rules (docs/protocol.md "Signatures") ---------------------------------------------

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z


def _decode_point(encoded: bytes) -> tuple[int, int] | str:
    """RFC 8032 §5.1.3 point decoding, refusing every non-canonical encoding: the affine point,
    or the reason it is refused."""
    sign = encoded[31] >> 7
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    if y >= _P:
        return "its y coordinate is not below p (a non-canonical encoding)"
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if v * x * x % _P == (-u) % _P:
        x = x * _SQRT_M1 % _P
    elif v * x * x % _P != u:
        return "it is not a point on the curve"
    if x == 0 and sign == 1:
        return "x is 0 but its sign bit is set (a non-canonical encoding)"
    return ((_P - x) if x & 1 != sign else x), y


def _add(a: _Point, b: _Point) -> _Point:
    """RFC 8032 §5.1.4 point addition (complete: it doubles too)."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    pa, pb = (y1 - x1) * (y2 - x2) % _P, (y1 + x1) * (y2 + x2) % _P
    pc, pd = t1 * 2 * _D * t2 % _P, z1 * 2 * z2 % _P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


@functools.lru_cache(maxsize=4096)
def check_public_key(public_key: bytes) -> str:
    """Why ``public_key`` may not sign on this ledger, or "" if it may.

    Refused: anything but 32 bytes; a non-canonical encoding (``y >= p``, or ``x = 0`` with the
    sign bit set); a point not on the curve; a point of small order (``[8]A`` is the identity),
    for which signatures can be forged or verify under other implementations' rules.
    Cached per key: the same senders sign again and again.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        return f"a public key is {PUBLIC_KEY_SIZE} bytes"
    decoded = _decode_point(public_key)
    if isinstance(decoded, str):
        return decoded
    x, y = decoded
    point: _Point = (x, y, 1, x * y % _P)
    for _ in range(3):
        point = _add(point, point)
    px, py, pz, _pt = point
    if px == 0 and py == pz:
        return "it is a point of small order"
    return ""


def is_canonical_scalar(encoded: bytes) -> bool:
    """A signature's ``S`` (32 bytes, little-endian) is below the group order ``L``."""
    return len(encoded) == 32 and int.from_bytes(encoded, "little") < GROUP_ORDER


@functools.lru_cache(maxsize=4096)
def _library_key(public_key: bytes) -> Ed25519PublicKey:
    """The library's key object (cached: building it costs as much as a tenth of a verify)."""
    return Ed25519PublicKey.from_public_bytes(public_key)


def _verify_uncached(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    if check_public_key(public_key) or not is_canonical_scalar(signature[32:]):
        return False
    try:
        _library_key(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class _VerifiedMemo:
    """The digests of the last ``capacity`` triples that verified (oldest forgotten first).

    A digest, not the triple: a message can be a pre-state blob of many megabytes. Forgetting
    is harmless (the signature is verified again), so a flood of valid signatures can cost
    time, never a wrong answer."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._digests: dict[bytes, None] = {}
        self._lock = threading.Lock()

    @staticmethod
    def digest(public_key: bytes, message: bytes, signature: bytes) -> bytes:
        hasher = hashlib.sha256(b"proofnet/verified/v1\x00")
        hasher.update(public_key)
        hasher.update(signature)
        hasher.update(message)
        return hasher.digest()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._digests

    def add(self, digest: bytes) -> None:
        with self._lock:
            if digest in self._digests:
                return
            if len(self._digests) >= self.capacity:
                del self._digests[next(iter(self._digests))]
            self._digests[digest] = None

    def clear(self) -> None:
        with self._lock:
            self._digests.clear()


VERIFIED_MEMO_SIZE: Final = 1 << 17
"""Triples remembered: more than ten full blocks of ``DEFAULT_MAX_BLOCK_TXS``."""
_verified = _VerifiedMemo(VERIFIED_MEMO_SIZE)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``
    under the pinned rules (docs/protocol.md "Signatures"). Remembered when true.

    The sizes are checked before the memo is read: its digest is over ``public_key ||
    signature || message``, one parse only when the first two have their fixed sizes
    (otherwise a triple that verified would make every re-split of its bytes "verify")."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    digest = _VerifiedMemo.digest(public_key, message, signature)
    if digest in _verified:
        return True
    if not _verify_uncached(public_key, message, signature):
        return False
    _verified.add(digest)
    return True


def remember_verified(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Record that ``verify_signature(public_key, message, signature)`` returned True in
    another process (a verifying worker of this node, running this very function)."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return  # never verifies: nothing to remember
    _verified.add(_VerifiedMemo.digest(public_key, message, signature))


def forget_verified() -> None:
    """Empty the memo (tests and benchmarks that must verify again)."""
    _verified.clear()

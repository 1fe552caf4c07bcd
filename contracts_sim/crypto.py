"""Accounts are Ed25519 keys (DESIGN §7).

    address_of(public_key)            "0x" + SHA-256(public key)[:20].hex()   (lowercase)
    generate_key() / key_from_seed()  a PrivateKey
    sign(key, msg) / verify_signature(public_key, msg, signature)
    PrivateKey.to_json() / PrivateKey.from_json(data)   file-friendly key material

No I/O here: services decide where key files live.
"""

from __future__ import annotations

import re
from typing import Any

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


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True

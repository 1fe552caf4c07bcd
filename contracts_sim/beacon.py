"""The randomness beacon: one value per block that no transaction can change.

    message(chain_id, h) = b"proofnet/beacon/v1" || utf8(chain_id) || uint64_be(h)
    beacon(h)            = RSASSA-PKCS1-v1_5-SHA256(producer key, message(chain_id, h))
    output(h)            = SHA-256(beacon(h))

Every block header carries ``beacon(h)``; the state records ``output(h)`` when block ``h + 1``
begins, and the sample seed of a job is the output of block ``final_height + 1``
(``jobs.get_sample_seed``). Why this cannot be steered (an RSA-FDH-style VRF, cf. RFC 9381 §5):

* The message holds only the chain id and the height — no transaction, no state, no time — so
  no party changes the value by choosing what goes into a block. (The block hash, the seed
  before, is a hash of the transactions: a solver grinds it by trying variants of its own.)
* A PKCS#1 v1.5 signature is deterministic and *unique*: for a correctly generated key
  (``e = 65537`` prime to ``λ(n)``) each message has exactly one valid signature, so the producer
  has one value per height and nothing to grind. Ed25519 is not usable here: its signatures are
  deterministic only for an honest signer (RFC 8032 derives the nonce from the key), while any
  nonce gives a valid signature, so the signer could choose among many.
* Nobody without the producer's private key can compute a future value; everybody can check a
  past one with the public key fixed in the chain's metadata at genesis (``ChainMeta``).

Remaining trust (docs/protocol.md, "Randomness"): the producer knows future values, so it could
help a solver by choosing at which height to include a commitment — the ordering power a single
sequencer has anyway. The message is unambiguous: the height is always its last 8 bytes.

The same key also signs every header (``sign_header``: ``RSASSA-PKCS1-v1_5-SHA256(producer
key, b"proofnet/header/v1\x00" || block hash)``), so a light client that pins the producer's
public key can tell the producer's headers — and the state roots in them — from a node's
inventions (docs/state-commitment.md, "Trust"). The two messages cannot be confused: the beacon's
starts ``proofnet/beacon/v1``, the header's ``proofnet/header/v1``, and neither is a prefix of
the other, so no header signature is a beacon and no beacon signs a header.

This is a simulated chain: the node keeps the private key in its store (``store.py``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from protocol.hashing import sha256
from protocol.types import Hash32

BEACON_DOMAIN: Final = b"proofnet/beacon/v1"
BEACON_KEY_BITS: Final = 2048
BEACON_PUBLIC_EXPONENT: Final = 65537
BEACON_SIZE: Final = BEACON_KEY_BITS // 8
"""A beacon (an RSA-2048 signature) is exactly this many bytes."""

MAX_BEACON_HEIGHT: Final = 2**64 - 1
HEADER_DOMAIN: Final = b"proofnet/header/v1\x00"
"""Prefixes what the producer signs for a header: a block hash, 32 bytes."""


def beacon_message(chain_id: str, height: int) -> bytes:
    """What the producer signs for block ``height`` of ``chain_id``: nothing a party controls."""
    if not 0 <= height <= MAX_BEACON_HEIGHT:
        raise ValueError(f"beacon height {height} is out of range")
    return BEACON_DOMAIN + chain_id.encode("utf-8") + height.to_bytes(8, "big")


def header_message(block_hash: bytes) -> bytes:
    """What the producer signs for a header: the header domain and the 32-byte block hash."""
    if len(block_hash) != 32:
        raise ValueError("a block hash is 32 bytes")
    return HEADER_DOMAIN + block_hash


def beacon_output(beacon: bytes) -> Hash32:
    """The random value of a block: SHA-256 of its (verified) beacon."""
    return sha256(beacon)


class BeaconKey:
    """The block producer's RSA-2048 key (private); ``public_key`` is DER SubjectPublicKeyInfo."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        numbers = private_key.public_key().public_numbers()
        if private_key.key_size != BEACON_KEY_BITS or numbers.e != BEACON_PUBLIC_EXPONENT:
            raise ValueError(f"a beacon key is RSA-{BEACON_KEY_BITS} with e = 65537")
        self._key = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, chain_id: str, height: int) -> bytes:
        """``beacon(height)``: the one valid value for this key, chain and height."""
        return self._key.sign(beacon_message(chain_id, height), padding.PKCS1v15(), hashes.SHA256())

    def sign_header(self, block_hash: bytes) -> bytes:
        """The producer's signature of a header, by its block hash (``header_message``)."""
        return self._key.sign(header_message(block_hash), padding.PKCS1v15(), hashes.SHA256())

    def to_der(self) -> bytes:
        """The private key as unencrypted PKCS#8 DER (what the node's store keeps)."""
        return self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_der(cls, data: bytes) -> BeaconKey:
        """Inverse of ``to_der``; raises ValueError on anything but an RSA-2048 key."""
        key = serialization.load_der_private_key(data, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a beacon key is an RSA key")
        return cls(key)

    def __repr__(self) -> str:  # never print the key
        return f"BeaconKey(public_key={sha256(self.public_key).hex()[:16]}…)"


def generate_beacon_key() -> BeaconKey:
    """A fresh producer key (about 0.1 s): made once, when a chain is created."""
    return BeaconKey(rsa.generate_private_key(BEACON_PUBLIC_EXPONENT, BEACON_KEY_BITS))


def beacon_key_from_seed(seed: bytes | str) -> BeaconKey:
    """A deterministic producer key from any seed material: its primes are the first primes in
    a SHAKE-256 stream of the seed (``cryptography`` cannot seed its own key generation).

    For tests and simulations only: whoever guesses the seed predicts every beacon. It makes
    simulated games reproducible, since sample seeds come from the beacon.
    """
    material = seed.encode("utf-8") if isinstance(seed, str) else seed
    p = _prime_from_stream(b"proofnet/beacon-key/p/" + material)
    q = _prime_from_stream(b"proofnet/beacon-key/q/" + material)
    if p == q:  # pragma: no cover - a SHA-3 collision
        raise ValueError("the seed gave equal primes")
    e = BEACON_PUBLIC_EXPONENT
    d = pow(e, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    return BeaconKey(numbers.private_key())


@functools.lru_cache(maxsize=1)
def shared_beacon_key() -> BeaconKey:
    """The producer key of simulated and test chains (one derivation per process): RSA key
    generation costs about 0.1 s a chain, and a fixed key keeps seeded games reproducible."""
    return beacon_key_from_seed("proofnet/simulation")


_PRIME_BITS: Final = BEACON_KEY_BITS // 2
_SMALL_PRIMES: Final = tuple(n for n in range(3, 2_000, 2) if all(n % d for d in range(3, n, 2)))
_MILLER_RABIN_BASES: Final = _SMALL_PRIMES[:20]  # error < 4^-20 even for adversarial input
_SMALL_PRIMES_PRODUCT: Final = math.prod(_SMALL_PRIMES)


def _prime_from_stream(material: bytes) -> int:
    """The first 1024-bit prime ``p`` with ``gcd(e, p - 1) = 1`` in a SHAKE-256 stream. The two
    top bits are set, so the product of two such primes has exactly 2048 bits."""
    for counter in itertools.count():
        raw = hashlib.shake_256(material + counter.to_bytes(8, "big")).digest(_PRIME_BITS // 8)
        candidate = int.from_bytes(raw, "big") | (3 << (_PRIME_BITS - 2)) | 1
        if candidate % BEACON_PUBLIC_EXPONENT != 1 and _is_probable_prime(candidate):
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def _is_probable_prime(n: int) -> bool:
    if math.gcd(n, _SMALL_PRIMES_PRODUCT) != 1:  # trial division, at once
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for base in _MILLER_RABIN_BASES:
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _load_public_key(public_key: bytes) -> rsa.RSAPublicKey | None:
    try:
        key = serialization.load_der_public_key(public_key)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != BEACON_KEY_BITS:
        return None
    if key.public_numbers().e != BEACON_PUBLIC_EXPONENT:
        return None
    return key


def is_beacon_public_key(public_key: bytes) -> bool:
    """True iff ``public_key`` is the DER of an RSA-2048 key with ``e = 65537``."""
    return _load_public_key(public_key) is not None


def verify_beacon(public_key: bytes, chain_id: str, height: int, beacon: bytes) -> bool:
    """True iff ``beacon`` is the producer's signature for block ``height`` of ``chain_id``."""
    key = _load_public_key(public_key)
    if key is None or len(beacon) != BEACON_SIZE or not 0 <= height <= MAX_BEACON_HEIGHT:
        return False
    try:
        key.verify(beacon, beacon_message(chain_id, height), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verify_header_signature(public_key: bytes, block_hash: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is the producer's (``public_key``) for the header whose block
    hash is ``block_hash``."""
    key = _load_public_key(public_key)
    if key is None or len(signature) != BEACON_SIZE or len(block_hash) != 32:
        return False
    try:
        key.verify(signature, header_message(block_hash), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True

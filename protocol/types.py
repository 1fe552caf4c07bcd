"""Typed aliases for the protocol's vocabulary.

Money is an integer, hashes are bytes, heights are integers — never floats.
"""

from typing import NewType

Hash32 = NewType("Hash32", bytes)
"""A SHA-256 digest (32 bytes)."""

Address = NewType("Address", str)
"""An account address: ``0x`` + 40 hex digits, derived from an Ed25519 public key."""

Amount = NewType("Amount", int)
"""A token amount in the smallest unit. Never negative in state."""

Height = NewType("Height", int)
"""A block height; the clock for every deadline."""

HASH_SIZE = 32

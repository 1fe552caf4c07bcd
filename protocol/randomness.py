"""Counter-based pseudo-randomness: every random choice is a hash of (tag, seed, counters).

The exact VM never touches a device RNG stream: batch indices and initial weights are derived
from SHAKE-256 over a domain tag, the job seed and the position (step, tensor name, ...). Any
machine can therefore recompute any step's randomness without replaying the steps before it.
"""

from __future__ import annotations

import hashlib
import struct

_U64 = struct.Struct("<Q")


def random_bytes(tag: str, seed: int, *counters: int | str, count: int) -> bytes:
    """The stream named by (tag, seed, counters) as ``count`` little-endian uint64 values'
    bytes: what ``random_u64`` unpacks, for callers that read it as an array at once."""
    if count < 0:
        raise ValueError("count must be non-negative")
    header = f"proofnet/{tag}/{seed}/" + "/".join(str(c) for c in counters)
    return hashlib.shake_256(header.encode("utf-8")).digest(8 * count)


def random_u64(tag: str, seed: int, *counters: int | str, count: int) -> list[int]:
    """``count`` uniform 64-bit integers for the stream named by (tag, seed, counters)."""
    raw = random_bytes(tag, seed, *counters, count=count)
    return [v for (v,) in _U64.iter_unpack(raw)]


def random_below(tag: str, seed: int, *counters: int | str, count: int, bound: int) -> list[int]:
    """``count`` integers uniform in [0, bound); the modulo bias is < bound / 2^64 (negligible)."""
    if bound <= 0:
        raise ValueError("bound must be positive")
    return [v % bound for v in random_u64(tag, seed, *counters, count=count)]


def batch_indices(seed: int, step: int, batch_size: int, num_examples: int) -> list[int]:
    """The training examples used by ``step``: sampled with replacement, from (seed, step)."""
    return random_below("batch", seed, step, count=batch_size, bound=num_examples)

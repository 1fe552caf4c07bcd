"""The verifier's spot-check sample and the probability that it catches a cheat
(docs/protocol.md, "Sampling").

A verifier re-executes k of the m segments of a job. Which ones is decided by

    seed = SHA-256(SAMPLE_DOMAIN || root || block_hash || verifier)

where ``root`` is the solver's final commitment, ``block_hash`` is the randomness of a block
produced *after* that commitment (on ProofNet's ledger, its beacon output: see
``contracts_sim/beacon.py``) and ``verifier`` is the verifier's address. Why each input is there:

* ``block_hash`` — the solver cannot predict the sample when it commits, so it cannot cheat only
  on segments that will not be checked; the verifier cannot grind it either. It must be a value
  no party can steer: a block's hash is not one (a solver grinds it through its own
  transactions), the producer's unique beacon signature is.
* ``root`` — the sample belongs to this commitment and no other.
* ``verifier`` — each verifier checks different segments, so together they cover more; the
  ledger can still recompute any verifier's sample and refuse an attestation for the wrong one.

The seed drives a counter-mode SHA-256 stream, ``SHA-256(seed || counter)``, read as 64-bit
big-endian integers; each draw below a bound uses rejection sampling (no modulo bias), and k
draws drive a partial Fisher–Yates shuffle of 0..m-1. The sample is the first k shuffled indices,
sorted. Because the shuffle's first k positions do not depend on k, a larger k extends a smaller
one's sample.

If c of the m segments are wrong and k are sampled without replacement,
``P(detect) = 1 - C(m - c, k) / C(m, k)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from fractions import Fraction

from protocol.hashing import sha256
from protocol.types import HASH_SIZE

SAMPLE_DOMAIN = b"proofnet/sample/v1\x00"
"""Domain tag of the sample seed, so no other hash in ProofNet can be replayed as one."""

MAX_SEGMENTS = 2**32
"""Upper bound on m; far above any real job, and it keeps every draw a 64-bit rejection."""

_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_U64_SPAN = 2**64


def _check_int(value: object, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"within {lo}..{hi}"
        raise ValueError(f"{what} must be {bound}, got {value}")
    return value


def _check_segments(num_segments: int, cheated_segments: int) -> None:
    _check_int(num_segments, "num_segments", 1, MAX_SEGMENTS)
    _check_int(cheated_segments, "cheated_segments", 0, num_segments)


def _u64_stream(seed: bytes) -> Iterator[int]:
    counter = 0
    while True:
        block = sha256(seed + counter.to_bytes(8, "big"))
        for offset in range(0, HASH_SIZE, 8):
            yield int.from_bytes(block[offset : offset + 8], "big")
        counter += 1


def _draw_below(stream: Iterator[int], bound: int) -> int:
    # Uniform in [0, bound): reject the top (2**64 mod bound) values, then reduce.
    limit = _U64_SPAN - _U64_SPAN % bound
    while True:
        value = next(stream)
        if value < limit:
            return value % bound


def compute_sample(
    root: bytes, block_hash: bytes, verifier: str, num_segments: int, k: int
) -> list[int]:
    """The sorted, distinct segment indices that ``verifier`` must check for ``root``.

    ``k`` is clipped to ``num_segments``. ``verifier`` must be a canonical address: ``0x`` and
    40 lowercase hex digits.
    """
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise ValueError(f"root must be {HASH_SIZE} bytes")
    if not isinstance(block_hash, bytes) or len(block_hash) != HASH_SIZE:
        raise ValueError(f"block_hash must be {HASH_SIZE} bytes")
    if not isinstance(verifier, str) or not _ADDRESS.fullmatch(verifier):
        raise ValueError(f"verifier must be 0x followed by 40 lowercase hex digits: {verifier!r}")
    m = _check_int(num_segments, "num_segments", 1, MAX_SEGMENTS)
    k = min(_check_int(k, "k", 0), m)

    # Every input has a fixed width, so the concatenation has one parse.
    seed = sha256(SAMPLE_DOMAIN + root + block_hash + verifier.encode("ascii"))
    stream = _u64_stream(seed)
    swapped: dict[int, int] = {}  # the shuffled array, stored sparsely: position -> value
    chosen = []
    for i in range(k):
        j = i + _draw_below(stream, m - i)
        chosen.append(swapped.get(j, j))
        swapped[j] = swapped.get(i, i)
    return sorted(chosen)


def _miss_probability(num_segments: int, cheated_segments: int, k: int) -> Fraction:
    # P(no cheated segment among k drawn without replacement), exact.
    return Fraction(math.comb(num_segments - cheated_segments, k), math.comb(num_segments, k))


def detection_probability(num_segments: int, cheated_segments: int, k: int) -> float:
    """``1 - C(m - c, k) / C(m, k)``: the chance that k sampled segments include a cheated one.

    ``k`` is clipped to ``num_segments``, as in ``compute_sample``.
    """
    _check_segments(num_segments, cheated_segments)
    k = min(_check_int(k, "k", 0), num_segments)
    return float(1 - _miss_probability(num_segments, cheated_segments, k))


def min_samples_for(num_segments: int, cheated_segments: int, target: float) -> int:
    """The smallest k whose detection probability is at least ``target`` (0 <= target <= 1).

    Compared exactly, so ``detection_probability(m, c, result) >= target`` always holds and a
    target of 1.0 means certainty. Raises ``ValueError`` when no k reaches the target, i.e.
    ``cheated_segments == 0`` and ``target > 0``.
    """
    _check_segments(num_segments, cheated_segments)
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        raise ValueError(f"target must be a number, got {target!r}")
    if not 0.0 <= target <= 1.0:  # also rejects NaN
        raise ValueError(f"target must be within [0, 1], got {target}")
    goal = Fraction(target)
    if cheated_segments == 0 and goal > 0:
        raise ValueError("no sample size detects a cheat that touches no segment")

    # P(detect) grows with k and reaches 1 at k = m - c + 1 (or m), so binary search.
    lo, hi = 0, min(num_segments, num_segments - cheated_segments + 1)
    while lo < hi:
        mid = (lo + hi) // 2
        if 1 - _miss_probability(num_segments, cheated_segments, mid) >= goal:
            hi = mid
        else:
            lo = mid + 1
    return lo

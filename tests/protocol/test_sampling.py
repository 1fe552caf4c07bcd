"""The verifier's spot-check sample and the detection probability
(docs/protocol.md, "Sampling")."""

from __future__ import annotations

import hashlib
import itertools
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.sampling import (
    SAMPLE_DOMAIN,
    compute_sample,
    detection_probability,
    min_samples_for,
)

ROOT = bytes(range(32))
BLOCK = bytes(range(32, 64))
VERIFIER = "0x" + "0123456789" * 4

hashes = st.binary(min_size=32, max_size=32)
addresses = st.text("0123456789abcdef", min_size=40, max_size=40).map(lambda h: "0x" + h)


def reference_sample(root: bytes, block_hash: bytes, verifier: str, m: int, k: int) -> list[int]:
    """The documented derivation, written plainly: full array, one draw at a time."""
    seed = hashlib.sha256(SAMPLE_DOMAIN + root + block_hash + verifier.encode()).digest()
    words = (
        int.from_bytes(hashlib.sha256(seed + c.to_bytes(8, "big")).digest()[o : o + 8], "big")
        for c in itertools.count()
        for o in (0, 8, 16, 24)
    )
    order = list(range(m))
    for i in range(min(k, m)):
        bound = m - i
        while (x := next(words)) >= 2**64 - 2**64 % bound:
            pass
        j = i + x % bound
        order[i], order[j] = order[j], order[i]
    return sorted(order[: min(k, m)])


def test_known_answer() -> None:
    # Pinned: every verifier and the ledger must derive the same sample.
    assert compute_sample(ROOT, BLOCK, VERIFIER, 1000, 8) == [77, 182, 184, 445, 625, 678, 740, 984]


@settings(max_examples=60, deadline=None)
@given(hashes, hashes, addresses, st.integers(1, 300), st.integers(0, 40))
def test_sample_matches_reference_and_is_well_formed(
    root: bytes, block: bytes, verifier: str, m: int, k: int
) -> None:
    sample = compute_sample(root, block, verifier, m, k)
    assert sample == reference_sample(root, block, verifier, m, k)
    assert sample == compute_sample(root, block, verifier, m, k)  # deterministic
    assert len(sample) == min(k, m)
    assert len(set(sample)) == len(sample)
    assert sample == sorted(sample)
    assert all(0 <= s < m for s in sample)


def test_k_is_clipped_to_the_number_of_segments() -> None:
    assert compute_sample(ROOT, BLOCK, VERIFIER, 5, 10) == [0, 1, 2, 3, 4]
    assert compute_sample(ROOT, BLOCK, VERIFIER, 5, 5) == [0, 1, 2, 3, 4]
    assert compute_sample(ROOT, BLOCK, VERIFIER, 5, 0) == []
    assert compute_sample(ROOT, BLOCK, VERIFIER, 1, 3) == [0]


def test_a_larger_k_extends_a_smaller_sample() -> None:
    previous: set[int] = set()
    for k in range(0, 60):
        sample = set(compute_sample(ROOT, BLOCK, VERIFIER, 200, k))
        assert previous <= sample
        previous = sample


@pytest.mark.parametrize("which", ["root", "block", "verifier"])
def test_sample_depends_on_each_input(which: str) -> None:
    base = compute_sample(ROOT, BLOCK, VERIFIER, 10_000, 20)
    root, block, verifier = ROOT, BLOCK, VERIFIER
    if which == "root":
        root = bytes(31) + b"\x01"
    elif which == "block":
        block = BLOCK[:-1] + b"\x00"
    else:
        verifier = VERIFIER[:-1] + "a"
    assert compute_sample(root, block, verifier, 10_000, 20) != base


def test_each_segment_is_equally_likely() -> None:
    # 3000 samples of 3 out of 10: each index expected 900 times (sd ~ 25).
    counts = [0] * 10
    for t in range(3000):
        block = hashlib.sha256(t.to_bytes(4, "big")).digest()
        for s in compute_sample(ROOT, block, VERIFIER, 10, 3):
            counts[s] += 1
    assert all(800 <= c <= 1000 for c in counts), counts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((ROOT[:31], BLOCK, VERIFIER, 10, 3), "root"),
        ((ROOT, "00" * 32, VERIFIER, 10, 3), "block_hash"),
        ((ROOT, BLOCK, "0x" + "AB" * 20, 10, 3), "verifier"),
        ((ROOT, BLOCK, VERIFIER[2:], 10, 3), "verifier"),
        ((ROOT, BLOCK, VERIFIER + "0", 10, 3), "verifier"),
        ((ROOT, BLOCK, VERIFIER, 0, 3), "num_segments"),
        ((ROOT, BLOCK, VERIFIER, 2**32 + 1, 3), "num_segments"),
        ((ROOT, BLOCK, VERIFIER, 10, -1), "k"),
        ((ROOT, BLOCK, VERIFIER, 10, True), "k"),
        ((ROOT, BLOCK, VERIFIER, 10.0, 3), "num_segments"),
    ],
)
def test_compute_sample_rejects_bad_arguments(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_sample(*args)


# --- detection probability -------------------------------------------------------------------


def brute_force_detection(m: int, c: int, k: int) -> Fraction:
    """Enumerate every k-subset of m segments, the first c of them cheated."""
    subsets = list(itertools.combinations(range(m), k))
    caught = sum(1 for s in subsets if any(i < c for i in s))
    return Fraction(caught, len(subsets))


def test_detection_probability_matches_enumeration() -> None:
    for m in range(1, 9):
        for c in range(0, m + 1):
            for k in range(0, m + 1):
                assert detection_probability(m, c, k) == float(brute_force_detection(m, c, k))


def test_detection_probability_values() -> None:
    assert detection_probability(10, 0, 5) == 0.0
    assert detection_probability(10, 3, 0) == 0.0
    assert detection_probability(10, 1, 10) == 1.0
    assert detection_probability(10, 1, 25) == 1.0  # k clipped to m
    assert detection_probability(10, 1, 1) == pytest.approx(0.1)
    assert detection_probability(100, 10, 10) == pytest.approx(
        1 - math.comb(90, 10) / math.comb(100, 10)
    )


@pytest.mark.parametrize(
    "args", [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 1, -1), (5.0, 1, 1), (5, 1, None)]
)
def test_detection_probability_rejects_bad_arguments(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        detection_probability(*args)


def test_min_samples_for_is_the_smallest_k() -> None:
    for m in range(1, 25):
        for c in range(1, m + 1):
            for target in (0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0):
                k = min_samples_for(m, c, target)
                assert detection_probability(m, c, k) >= target
                if k > 0:
                    assert 1 - Fraction(math.comb(m - c, k - 1), math.comb(m, k - 1)) < Fraction(
                        target
                    )


def test_min_samples_for_values() -> None:
    assert min_samples_for(100, 10, 0.0) == 0
    assert min_samples_for(100, 100, 1.0) == 1
    assert min_samples_for(100, 1, 1.0) == 100  # certainty needs every segment
    assert min_samples_for(100, 10, 1.0) == 91
    assert min_samples_for(100, 0, 0.0) == 0  # a zero target needs no sample, even without a cheat
    # A cheat on 10% of 100 segments: 0.99 needs 36 samples.
    k = min_samples_for(100, 10, 0.99)
    assert k == 36
    assert detection_probability(100, 10, k) >= 0.99 > detection_probability(100, 10, k - 1)


@pytest.mark.parametrize(
    "args",
    [
        (10, 0, 0.5),
        (10, 1, -0.01),
        (10, 1, 1.01),
        (10, 1, float("nan")),
        (10, 1, "0.5"),
        (0, 0, 0.5),
    ],
)
def test_min_samples_for_rejects_impossible_or_bad_targets(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        min_samples_for(*args)

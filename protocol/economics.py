"""The economics of deterrence (DESIGN §5): when does cheating not pay?

A job of N steps is split into m = N / C segments. A cheater whose lie shows in c of them is
caught by one verifier sampling k segments without replacement with probability

    p1 = 1 - C(m - c, k) / C(m, k)

and by at least one of V independent verifiers with P = 1 - (1 - p1)^V. If cheating saves the
fraction s of the job's work (worth s · payment to the cheater), it does not pay when the expected
slash exceeds the saving:

    P · stake > s · payment

Sabotage that saves no work (s = 0) is deterred as long as P > 0. A verifier re-executes k
segments, so its cost is k / m of the solver's (k·C of N steps).

All amounts are integers (token units). The comparison is made exactly, with P as a fraction
(a float P of 0.30000000000000004 must not make 0.3 · 1000 > 300 at the boundary); the saved
fraction s is read as the nearest fraction of denominator at most 10^6 (0.3 is 3/10, 1/3 is
1/3). Probabilities are returned as floats, for reporting only, never for ledger state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from protocol.sampling import detection_probability

SAVED_FRACTION_DENOMINATOR = 1_000_000


@dataclass(frozen=True)
class Deterrence:
    """The numbers behind one (job, cheat) pair."""

    segments: int
    cheated_segments: int
    sample_count: int
    verifiers: int
    detection: float  # P(at least one verifier samples a cheated segment)
    work_saved: int  # token value of the skipped work: s · payment
    stake: int
    expected_slash: float  # P · stake
    deterred: bool  # expected_slash > work_saved (or P > 0 when nothing is saved)
    verifier_cost_fraction: float  # k / m per verifier


def exact_detection(segments: int, cheated: int, k: int, verifiers: int) -> Fraction:
    """P(at least one of ``verifiers`` independent samples of k segments hits a cheated one),
    as an exact fraction."""
    if verifiers < 0:
        raise ValueError("verifiers must be non-negative")
    detection_probability(segments, cheated, k)  # validates m, c and k
    if verifiers == 0 or cheated == 0:
        return Fraction(0)
    k = min(k, segments)
    miss_one = Fraction(math.comb(segments - cheated, k), math.comb(segments, k))
    return 1 - miss_one**verifiers


def detection_with_verifiers(segments: int, cheated: int, k: int, verifiers: int) -> float:
    """P(at least one of ``verifiers`` independent samples of k segments hits a cheated one)."""
    return float(exact_detection(segments, cheated, k, verifiers))


def work_saved(payment: int, saved_fraction: float) -> int:
    """The token value of the skipped work, floor(s · payment)."""
    if not 0.0 <= saved_fraction <= 1.0:
        raise ValueError("saved_fraction must be in [0, 1]")
    s = Fraction(saved_fraction).limit_denominator(SAVED_FRACTION_DENOMINATOR)
    return math.floor(s * payment)


def _deters(p: Fraction, stake: int, saved: int) -> bool:
    return p * stake > saved if saved > 0 else p > 0


def assess(
    segments: int,
    cheated: int,
    k: int,
    verifiers: int,
    stake: int,
    payment: int,
    saved_fraction: float,
) -> Deterrence:
    """Is a cheat touching ``cheated`` of ``segments`` and saving ``saved_fraction`` deterred?"""
    saved = work_saved(payment, saved_fraction)
    p = exact_detection(segments, cheated, k, verifiers)
    return Deterrence(
        segments,
        cheated,
        min(k, segments),
        verifiers,
        float(p),
        saved,
        stake,
        float(p * stake),
        _deters(p, stake, saved),
        min(k, segments) / segments,
    )


def min_sample_count(
    segments: int, cheated: int, verifiers: int, stake: int, payment: int, saved_fraction: float
) -> int | None:
    """The smallest k that deters the cheat (None: not even k = m does)."""
    for k in range(1, segments + 1):
        if assess(segments, cheated, k, verifiers, stake, payment, saved_fraction).deterred:
            return k
    return None


def min_stake(
    segments: int, cheated: int, k: int, verifiers: int, payment: int, saved_fraction: float
) -> int | None:
    """The smallest stake that deters the cheat (None: it is never detected)."""
    p = exact_detection(segments, cheated, k, verifiers)
    if p == 0:
        return None
    saved = work_saved(payment, saved_fraction)
    if saved == 0:
        return 1
    return math.floor(saved / p) + 1  # the smallest integer stake with p · stake > saved

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

All amounts are integers (token units); probabilities are floats used only for reporting and for
the comparison above, never in ledger state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.sampling import detection_probability


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


def detection_with_verifiers(segments: int, cheated: int, k: int, verifiers: int) -> float:
    """P(at least one of ``verifiers`` independent samples of k segments hits a cheated one)."""
    if verifiers < 0:
        raise ValueError("verifiers must be non-negative")
    if verifiers == 0 or cheated == 0:
        return 0.0
    miss_one = 1.0 - detection_probability(segments, cheated, k)
    return 1.0 - miss_one**verifiers


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
    if not 0.0 <= saved_fraction <= 1.0:
        raise ValueError("saved_fraction must be in [0, 1]")
    p = detection_with_verifiers(segments, cheated, k, verifiers)
    saved = math.floor(saved_fraction * payment)
    expected = p * stake
    deterred = expected > saved if saved > 0 else p > 0.0
    return Deterrence(
        segments,
        cheated,
        min(k, segments),
        verifiers,
        p,
        saved,
        stake,
        expected,
        deterred,
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
    p = detection_with_verifiers(segments, cheated, k, verifiers)
    if p <= 0.0:
        return None
    saved = math.floor(saved_fraction * payment)
    if saved == 0:
        return 1
    stake = math.floor(saved / p) + 1
    while p * stake <= saved:  # guard against float rounding at the boundary
        stake += 1
    return stake

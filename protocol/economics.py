"""The economics of deterrence (docs/protocol.md, "Economics"): when does cheating not pay?

A job of N steps is split into m = N / C segments. A cheater whose lie shows in c of them is
caught by one verifier sampling k segments without replacement with probability

    p1 = 1 - C(m - c, k) / C(m, k)

and by at least one of V independent verifiers with P = 1 - (1 - p1)^V. If cheating saves the
fraction s of the job's work (worth s · payment to the cheater), it does not pay when the expected
slash exceeds the saving:

    P · stake > s · payment

Sabotage that saves no work (s = 0) is deterred as long as P > 0. A verifier re-executes k
segments, so its cost is k / m of the solver's (k·C of N steps).

The worst case: an accomplice collects the reward. A caught cheater does not lose its whole
stake if its partner is the one paid for catching it: the ledger pays the challengers (together)
``reward_bps`` of the slashed stake and burns the rest, and a second, staked account of the
cheater can always be among those challengers. So the loss priced here is

    loss_with_accomplice = stake - floor(stake · reward_bps / 10000)

and cheating is deterred when P · loss_with_accomplice > s · payment. ``reward_bps = 0`` prices
a cheater without an accomplice (or a chain that pays no reward); callers pricing a chain pass
its ``slash_reward_bps``.

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
BPS = 10_000  # basis points in one whole


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
    loss_with_accomplice: int  # stake less the reward an accomplice challenger may collect
    expected_loss: float  # P · loss_with_accomplice
    deterred: bool  # expected_loss > work_saved (or P > 0 and a loss when nothing is saved)
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


def loss_with_accomplice(stake: int, reward_bps: int) -> int:
    """What a caught cheater loses for certain: its stake, less the challenger reward
    (``reward_bps`` of it, rounded down as the ledger does) that its accomplice may collect."""
    _check_reward_bps(reward_bps)
    return stake - stake * reward_bps // BPS


def _check_reward_bps(reward_bps: int) -> None:
    if not 0 <= reward_bps <= BPS:
        raise ValueError(f"reward_bps must be in [0, {BPS}], got {reward_bps}")


def _deters(p: Fraction, loss: int, saved: int) -> bool:
    # The expected loss must exceed the saving; with nothing saved, any expected loss deters.
    return p * loss > saved


def assess(
    segments: int,
    cheated: int,
    k: int,
    verifiers: int,
    stake: int,
    payment: int,
    saved_fraction: float,
    reward_bps: int = 0,
) -> Deterrence:
    """Is a cheat touching ``cheated`` of ``segments`` and saving ``saved_fraction`` deterred,
    when an accomplice may recover ``reward_bps`` of the stake?"""
    saved = work_saved(payment, saved_fraction)
    p = exact_detection(segments, cheated, k, verifiers)
    loss = loss_with_accomplice(stake, reward_bps)
    return Deterrence(
        segments,
        cheated,
        min(k, segments),
        verifiers,
        float(p),
        saved,
        stake,
        float(p * stake),
        loss,
        float(p * loss),
        _deters(p, loss, saved),
        min(k, segments) / segments,
    )


def min_sample_count(
    segments: int,
    cheated: int,
    verifiers: int,
    stake: int,
    payment: int,
    saved_fraction: float,
    reward_bps: int = 0,
) -> int | None:
    """The smallest k that deters the cheat (None: not even k = m does)."""
    for k in range(1, segments + 1):
        d = assess(segments, cheated, k, verifiers, stake, payment, saved_fraction, reward_bps)
        if d.deterred:
            return k
    return None


def min_stake(
    segments: int,
    cheated: int,
    k: int,
    verifiers: int,
    payment: int,
    saved_fraction: float,
    reward_bps: int = 0,
) -> int | None:
    """The smallest stake that deters the cheat (None: it is never detected, or an accomplice
    recovers the whole stake)."""
    p = exact_detection(segments, cheated, k, verifiers)
    return stake_to_deter(p, work_saved(payment, saved_fraction), reward_bps)


def stake_to_deter(p: Fraction, saved: int, reward_bps: int = 0) -> int | None:
    """The smallest stake whose expected loss, detected with probability ``p`` and with
    ``reward_bps`` of it recovered by an accomplice, exceeds ``saved`` (None: no stake does)."""
    _check_reward_bps(reward_bps)
    kept = Fraction(BPS - reward_bps, BPS)  # the share of the stake an accomplice cannot recover
    if p == 0 or kept == 0:
        return None
    need = math.floor(saved / p) + 1  # the smallest integer loss with p · loss > saved
    # loss_with_accomplice is non-decreasing in the stake and at least stake · kept, so the
    # answer lies in [need, ceil(need / kept)]: bisect for the smallest stake that loses enough.
    lo, hi = need, math.ceil(need / kept)
    while lo < hi:
        mid = (lo + hi) // 2
        if loss_with_accomplice(mid, reward_bps) >= need:
            hi = mid
        else:
            lo = mid + 1
    return lo

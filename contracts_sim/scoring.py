"""Bid scoring: who gets a job (not "lowest price wins"; docs/protocol.md, "Bid scoring").

A bid's score is a weighted mean, in basis points (0..10_000), of four components, all integer
arithmetic so every node computes the same number:

    price     (payment - price) / payment          cheaper is better
    stake     min(stake, cap · min_stake) / cap    more free stake is better, up to a cap
    capacity  min(capacity · train_blocks / steps,   declared steps/block against the deadline;
                  headroom) / headroom             1x the need scores half (headroom 2x), and
                                                   bids below 1x are refused at bid time
    history   (completed + 1) /                    Laplace-smoothed success rate; a slash counts
              (completed + w · slashed + 2)        as w failures; a newcomer scores 5000

Weights and caps are ``Params`` fields. Ties go to the lower price, then the earlier bid, then
the lower address. ``score_bid`` is pure so a benchmark can compare it with plain lowest-price.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts_sim.params import BPS, Params
from contracts_sim.records import Account, Bid


def required_capacity(steps: int, train_blocks: int) -> int:
    """Steps per block needed to finish ``steps`` within ``train_blocks`` blocks (ceiling)."""
    return -(-steps // train_blocks)


def score_price(price: int, payment: int) -> int:
    if payment <= 0:
        return BPS
    return max(0, payment - price) * BPS // payment


def score_stake(stake: int, min_stake: int, params: Params) -> int:
    cap = max(1, min_stake * params.stake_score_cap)
    return min(stake, cap) * BPS // cap


def score_capacity(capacity: int, steps: int, train_blocks: int, params: Params) -> int:
    ratio_bps = capacity * train_blocks * BPS // steps  # multiples of the need, in bps
    headroom = params.capacity_headroom_bps
    return min(ratio_bps, headroom) * BPS // headroom


def score_history(completed: int, slashed: int, params: Params) -> int:
    return (completed + 1) * BPS // (completed + params.slash_history_weight * slashed + 2)


def score_bid(
    *,
    price: int,
    payment: int,
    stake: int,
    min_stake: int,
    capacity: int,
    steps: int,
    train_blocks: int,
    completed: int,
    slashed: int,
    params: Params,
) -> int:
    """The bid's score in basis points (higher wins)."""
    weighted = (
        params.score_weight_price * score_price(price, payment)
        + params.score_weight_stake * score_stake(stake, min_stake, params)
        + params.score_weight_capacity * score_capacity(capacity, steps, train_blocks, params)
        + params.score_weight_history * score_history(completed, slashed, params)
    )
    return weighted // BPS


def rank_key(score: int, bid: Bid) -> tuple[int, int, int, str]:
    """Sort key: best first; ties broken by price, then bid height, then address."""
    return (-score, bid.price, bid.height, bid.solver)


def rank_bids(
    bids: Iterable[tuple[Bid, Account]],
    *,
    payment: int,
    min_stake: int,
    steps: int,
    train_blocks: int,
    params: Params,
) -> list[tuple[int, Bid]]:
    """Eligible bids (free stake >= min_stake) with their scores, best first."""
    scored = [
        (
            score_bid(
                price=bid.price,
                payment=payment,
                stake=account.bonded,
                min_stake=min_stake,
                capacity=bid.capacity,
                steps=steps,
                train_blocks=train_blocks,
                completed=account.jobs_completed,
                slashed=account.jobs_slashed,
                params=params,
            ),
            bid,
        )
        for bid, account in bids
        if account.bonded >= min_stake
    ]
    return sorted(scored, key=lambda item: rank_key(*item))

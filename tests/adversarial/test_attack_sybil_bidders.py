"""sybil-bidders: bid-slot squatting. A job holds at most ``max_bids_per_job`` bids, so sybil
accounts that fill the list at the full price would lock every cheaper bid out and one of them
would win at the full price.

When the list is full a better bid displaces the worst (scored as at assignment): the cheaper
honest bid gets in, the squatters cannot push it out again by re-bidding the same terms, and
the honest solver wins at its price.

A bid also reserves the job's ``min_stake`` of the bidder's free stake until it is evicted or
the job leaves ``open``. Without that, sybils could outbid (and evict) the honest bid at price
0, unstake before ``close_bidding`` so that no eligible bid is left and the job expires, and
back bids on every open job with one stake: the whole market jammed for the unbonding delay.
"""

from __future__ import annotations

import pytest

from contracts_sim.exceptions import InsufficientStakeError, StakeReservedError, TooManyBidsError
from contracts_sim.params import TEST
from contracts_sim.records import JobStatus
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    BidBody,
    ClaimTimeoutBody,
    CloseBiddingBody,
    StakeBody,
    UnstakeBody,
)
from protocol.types import Amount
from tests.ledger_helpers import JOB_TERMS, job, post_job

pytestmark = pytest.mark.adversarial

SYBILS = [f"sybil{i}" for i in range(TEST.max_bids_per_job)]
FULL_PRICE = JOB_TERMS["payment"]


def squatted_job() -> tuple[LedgerHarness, str]:
    """A job whose bid list the sybils have filled at the full price."""
    h = LedgerHarness(
        {"submitter": 100_000, "honest": 10_000, **dict.fromkeys([*SYBILS, "late"], 1_000)}
    )
    h.send("honest", StakeBody(Amount(1_000)))
    for sybil in [*SYBILS, "late"]:
        h.send(sybil, StakeBody(Amount(JOB_TERMS["min_stake"])))
    job_id = post_job(h)
    for sybil in SYBILS:
        h.send(sybil, BidBody(job_id, Amount(FULL_PRICE), 8))
    assert len(job(h, job_id).bids) == TEST.max_bids_per_job
    return h, job_id


def test_a_cheaper_honest_bid_displaces_a_squatter_and_wins() -> None:
    h, job_id = squatted_job()
    receipt = h.send("honest", BidBody(job_id, Amount(700), 8))
    evicted = receipt.event("bid_evicted").data["solver"]
    assert evicted in {h.address(s) for s in SYBILS}
    assert len(job(h, job_id).bids) == TEST.max_bids_per_job

    # The evicted squatter cannot push the honest bid out again with the same terms.
    name = next(s for s in SYBILS if h.address(s) == evicted)
    h.expect_error(name, BidBody(job_id, Amount(FULL_PRICE), 8), error=TooManyBidsError)

    h.advance_to(job(h, job_id).bid_deadline + 1)
    h.send("submitter", CloseBiddingBody(job_id))
    assigned = job(h, job_id)
    assert assigned.solver == h.address("honest") and assigned.price == 700


def test_a_bid_no_better_than_the_squatters_is_refused() -> None:
    h, job_id = squatted_job()
    h.advance(1)  # a tie goes to the earlier bid: late bidders cannot churn the list
    before = job(h, job_id).bids
    h.expect_error("late", BidBody(job_id, Amount(FULL_PRICE), 8), error=TooManyBidsError)
    assert job(h, job_id).bids == before


def test_evicting_sybils_cannot_unstake_and_jam_the_job() -> None:
    """The red team's jam: outbid and evict the honest bid at price 0, then leave before close."""
    min_stake = JOB_TERMS["min_stake"]
    h = LedgerHarness({"submitter": 100_000, "honest": 10_000, **dict.fromkeys(SYBILS, 1_000)})
    h.send("honest", StakeBody(Amount(1_000)))
    for sybil in SYBILS:
        h.send(sybil, StakeBody(Amount(min_stake)))
    job_id = post_job(h)
    h.send("honest", BidBody(job_id, Amount(700), 8))
    evicted = []
    for sybil in SYBILS:
        receipt = h.send(sybil, BidBody(job_id, Amount(0), 8))
        evicted += [e.data["solver"] for e in receipt.events if e.kind == "bid_evicted"]
    assert evicted == [h.address("honest")]

    # The sybils' bids reserve their stake: none of it can leave while the job is open.
    for sybil in SYBILS:
        err = h.expect_error(sybil, UnstakeBody(Amount(min_stake)), error=StakeReservedError)
        assert (err.reserved, err.available) == (min_stake, 0)  # type: ignore[attr-defined]

    # At close a sybil is still eligible and wins: the job is assigned, not expired ...
    h.advance_to(job(h, job_id).bid_deadline + 1)
    h.send("submitter", CloseBiddingBody(job_id))
    assigned = job(h, job_id)
    assert assigned.status is JobStatus.ASSIGNED
    assert assigned.solver in {h.address(s) for s in SYBILS} and assigned.price == 0
    # ... and it must train or lose the stake.
    assert assigned.train_deadline is not None
    h.advance_to(assigned.train_deadline + 1)
    h.send("submitter", ClaimTimeoutBody(job_id, None))
    assert job(h, job_id).status is JobStatus.SLASHED


def test_one_stake_cannot_back_bids_on_many_jobs() -> None:
    min_stake = JOB_TERMS["min_stake"]
    h = LedgerHarness({"submitter": 100_000, "sybil": 1_000})
    h.send("sybil", StakeBody(Amount(min_stake)))
    first, second = post_job(h), post_job(h)
    h.send("sybil", BidBody(first, Amount(0), 8))

    bid = BidBody(second, Amount(0), 8)
    err = h.expect_error("sybil", bid, error=InsufficientStakeError)
    assert (err.reserved, err.available) == (min_stake, 0)  # type: ignore[attr-defined]
    assert job(h, second).bids == ()

    # More stake, bonded for this bid too, backs it.
    h.send("sybil", StakeBody(Amount(min_stake)))
    h.send("sybil", bid)
    assert [b.solver for b in job(h, second).bids] == [h.address("sybil")]

"""sybil-bidders: bid-slot squatting. A job holds at most ``max_bids_per_job`` bids and a bid
locks nothing, so sybil accounts that fill the list at the full price would lock every cheaper
bid out and one of them would win at the full price.

When the list is full a better bid displaces the worst (scored as at assignment): the cheaper
honest bid gets in, the squatters cannot push it out again by re-bidding the same terms, and
the honest solver wins at its price.
"""

from __future__ import annotations

import pytest

from contracts_sim.exceptions import TooManyBidsError
from contracts_sim.params import TEST
from contracts_sim.testing import LedgerHarness
from tests.ledger_helpers import JOB_TERMS, job, post_job

pytestmark = pytest.mark.adversarial

SYBILS = [f"sybil{i}" for i in range(TEST.max_bids_per_job)]
FULL_PRICE = JOB_TERMS["payment"]


def squatted_job() -> tuple[LedgerHarness, str]:
    """A job whose bid list the sybils have filled at the full price."""
    h = LedgerHarness(
        {"submitter": 100_000, "honest": 10_000, **dict.fromkeys([*SYBILS, "late"], 1_000)}
    )
    h.send("honest", "stake", {"amount": 1_000})
    for sybil in [*SYBILS, "late"]:
        h.send(sybil, "stake", {"amount": JOB_TERMS["min_stake"]})
    job_id = post_job(h)
    for sybil in SYBILS:
        h.send(sybil, "bid", {"job_id": job_id, "price": FULL_PRICE, "capacity": 8})
    assert len(job(h, job_id).bids) == TEST.max_bids_per_job
    return h, job_id


def test_a_cheaper_honest_bid_displaces_a_squatter_and_wins() -> None:
    h, job_id = squatted_job()
    receipt = h.send("honest", "bid", {"job_id": job_id, "price": 700, "capacity": 8})
    evicted = receipt.event("bid_evicted").data["solver"]
    assert evicted in {h.address(s) for s in SYBILS}
    assert len(job(h, job_id).bids) == TEST.max_bids_per_job

    # The evicted squatter cannot push the honest bid out again with the same terms.
    name = next(s for s in SYBILS if h.address(s) == evicted)
    h.expect_error(
        name, "bid", {"job_id": job_id, "price": FULL_PRICE, "capacity": 8}, TooManyBidsError
    )

    h.advance_to(job(h, job_id).bid_deadline + 1)
    h.send("submitter", "close_bidding", {"job_id": job_id})
    assigned = job(h, job_id)
    assert assigned.solver == h.address("honest") and assigned.price == 700


def test_a_bid_no_better_than_the_squatters_is_refused() -> None:
    h, job_id = squatted_job()
    h.advance(1)  # a tie goes to the earlier bid: late bidders cannot churn the list
    before = job(h, job_id).bids
    h.expect_error(
        "late", "bid", {"job_id": job_id, "price": FULL_PRICE, "capacity": 8}, TooManyBidsError
    )
    assert job(h, job_id).bids == before

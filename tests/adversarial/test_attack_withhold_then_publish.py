"""withhold-then-publish: a solver that trains honestly but serves no data to verifiers, then
posts it only once it is challenged, to win the challenger's bond — and the floods of data
requests that could be used against an honest solver.

On main a verifier that could not get a blob had two choices: attest blind, or challenge the
withheld segment of a correct trajectory and lose its bond when the solver posted the pre-state.
Data availability is the author's burden: the verifier sends a *data request* (``challenge``
with ``withheld: true``, no bond) for a segment of its sample; the solver publishes the blob
with both leaves of the segment proved (``publish_data``), nobody is at fault and the verifier
judges the segment from the chain — or the solver does not, and it is slashed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from contracts_sim.exceptions import (
    DataAlreadyRequestedError,
    DeadlinePassedError,
    HashMismatchError,
    InvalidProofError,
    MalformedBodyError,
    NotYourTurnError,
)
from contracts_sim.jobs import get_verifier_sample
from contracts_sim.params import TEST
from contracts_sim.records import DisputeStatus, JobStatus, Phase
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    AttestBody,
    ChallengeBody,
    ClaimTimeoutBody,
    PostPrestateBody,
    PublishDataBody,
)
from protocol.types import Hash32
from tests.dispute_agents import Run, make_run
from tests.ledger_helpers import committed_job, funded_harness, job

pytestmark = pytest.mark.adversarial


def committed(h: LedgerHarness, run: Run, **terms: Any) -> str:
    """A job committed over ``run``'s leaves, its sample seed block on chain."""
    job_id, _ = committed_job(h, leaves=list(run.leaves), **terms)
    h.advance(2)
    return job_id


def sample_of(h: LedgerHarness, job_id: str, verifier: str) -> list[int]:
    return get_verifier_sample(h.state, job_id, h.address(verifier))


def request(h: LedgerHarness, who: str, job_id: str, segment: int) -> str:
    body = ChallengeBody(job_id, None, data_segment=segment)
    return str(h.send(who, body).event("data_requested").data["dispute_id"])


def publication(run: Run, dispute_id: str, segment: int) -> PublishDataBody:
    tree = run.tree
    return PublishDataBody(
        dispute_id=dispute_id,
        blob=run.blobs[segment * run.spec.checkpoint_interval],
        pre_entry=Hash32(run.leaves[segment]),
        pre_proof=tree.inclusion_proof(segment),
        post_entry=Hash32(run.leaves[segment + 1]),
        post_proof=tree.inclusion_proof(segment + 1),
    )


def test_publishing_returns_the_bond_records_the_leaves_and_reopens_the_window() -> None:
    h = funded_harness()
    run = make_run()
    job_id = committed(h, run)
    segment = sample_of(h, job_id, "v1")[0]
    balance = h.account("v1").balance
    dispute_id = request(h, "v1", job_id, segment)
    dispute = h.state.get_dispute(dispute_id)
    assert dispute.phase is Phase.PUBLISH_DATA and dispute.data_request
    assert dispute.bond == 0  # a request cannot be false: there is nothing to forfeit

    receipt = h.send("solver", publication(run, dispute_id, segment))

    assert receipt.event("data_published").data["segment"] == segment
    dispute = h.state.get_dispute(dispute_id)
    assert dispute.status is DisputeStatus.DATA_PUBLISHED
    assert (dispute.hash_lo, dispute.hash_hi) == (run.leaves[segment], run.leaves[segment + 1])
    assert h.account("v1").balance == balance
    record = job(h, job_id)
    assert record.open_disputes == 0 and record.status is JobStatus.COMMITTED
    assert record.challenge_deadline == h.height + TEST.challenge_window
    # The request was not a verdict: the verifier attests (or challenges) once it has checked.
    h.send("v1", AttestBody(job_id))


def test_a_solver_that_does_not_publish_is_slashed() -> None:
    h = funded_harness()
    run = make_run()
    job_id = committed(h, run)
    dispute_id = request(h, "v1", job_id, sample_of(h, job_id, "v1")[0])
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    receipt = h.send("outsider", ClaimTimeoutBody(None, dispute_id))
    assert h.state.get_dispute(dispute_id).status is DisputeStatus.CHALLENGER_WON
    assert job(h, job_id).status is JobStatus.SLASHED
    assert "slashed" in receipt.kinds()


def test_only_the_solver_publishes_and_only_the_requested_data() -> None:
    h = funded_harness()
    run = make_run()
    job_id = committed(h, run)
    segment = sample_of(h, job_id, "v1")[0]
    dispute_id = request(h, "v1", job_id, segment)
    good = publication(run, dispute_id, segment)
    h.expect_error("v1", good, error=NotYourTurnError)
    other = (segment + 1) % (len(run.leaves) - 1)
    wrong_blob = replace(good, blob=publication(run, dispute_id, other).blob)
    h.expect_error("solver", wrong_blob, error=HashMismatchError)
    wrong_leaf = replace(good, post_entry=Hash32(run.leaves[segment]))
    h.expect_error("solver", wrong_leaf, error=InvalidProofError)
    h.expect_error(
        "solver", PostPrestateBody(dispute_id, good.blob)
    )  # a data request is answered by publish_data only


def test_a_request_names_a_segment_of_the_requesters_own_sample() -> None:
    h = funded_harness()
    run = make_run()
    job_id = committed(h, run)
    others = sorted(set(range(len(run.leaves) - 1)) - set(sample_of(h, job_id, "v1")))
    body = ChallengeBody(job_id, None, data_segment=others[0])
    h.expect_error("v1", body, error=MalformedBodyError)
    # a hand-made body: a data request that names no segment (ChallengeBody cannot express it)
    h.expect_error("v1", "challenge", {"job_id": job_id, "withheld": True}, MalformedBodyError)


def test_a_segment_is_requested_at_most_once_per_job() -> None:
    """Sybil requesters cannot make the solver publish the same blob again and again."""
    h = funded_harness()
    run = make_run()
    # k = m: every verifier's sample is every segment, so v1 and v2 may both ask for segment 0.
    job_id = committed(h, run, sample_count=8)
    dispute_id = request(h, "v1", job_id, 0)
    body = ChallengeBody(job_id, None, data_segment=0)
    h.expect_error("v2", body, error=DataAlreadyRequestedError)
    h.send("solver", publication(run, dispute_id, 0))
    h.expect_error("v2", body, error=DataAlreadyRequestedError)  # it is on chain


def test_each_open_request_gives_the_solver_another_move_of_time() -> None:
    """A flood of requests must not outrun an honest solver that answers one per block."""
    h = funded_harness()
    run = make_run()
    job_id = committed(h, run, sample_count=8)
    opened = [request(h, v, job_id, segment) for segment, v in enumerate(("v1", "v2", "v3"))]
    deadlines = [h.state.get_dispute(d).deadline for d in opened]
    assert deadlines == [h.height + TEST.move_timeout * n for n in (1, 2, 3)]
    for segment, dispute_id in enumerate(opened):
        h.send("solver", publication(run, dispute_id, segment))
        h.advance(TEST.move_timeout)  # the slowest answers that still meet every deadline
    assert job(h, job_id).status is JobStatus.COMMITTED
    assert job(h, job_id).open_disputes == 0


def test_requests_only_in_the_original_window() -> None:
    h = funded_harness()
    run = make_run()
    job_id = committed(h, run, sample_count=8)
    dispute_id = request(h, "v1", job_id, 0)
    record = job(h, job_id)
    assert record.final_height is not None
    original_deadline = record.final_height + TEST.challenge_window
    h.advance_to(h.state.get_dispute(dispute_id).deadline)
    h.send("solver", publication(run, dispute_id, 0))
    h.advance_to(original_deadline + 1)
    # Publishing reopened the window, for verdicts only: requests cannot keep it open.
    reopened = job(h, job_id).challenge_deadline
    assert reopened is not None and reopened > h.height
    body = ChallengeBody(job_id, None, data_segment=1)
    h.expect_error("v2", body, error=DeadlinePassedError)
    h.send("v2", AttestBody(job_id))


@pytest.mark.parametrize("what", ["blobs", "leaves", "all"])
def test_in_process_the_verifier_asks_the_solver_publishes_and_nobody_pays(what: str) -> None:
    from services.sim import scenarios
    from tests.adversarial.play import assert_outcome

    result = assert_outcome(scenarios.withhold_then_publish(what))
    (outcome,) = result.jobs
    assert outcome.status == "settled" and not outcome.bonds_lost and outcome.attesters
    # Every verifier met withheld data, asked for it, and judged from what was published.
    checks = [by_job[outcome.job_id] for by_job in result.checks.values()]
    assert checks and all(c.withheld and c.verdict.action == "attest" for c in checks)

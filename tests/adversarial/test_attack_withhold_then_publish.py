"""withhold-then-publish: a solver that trains honestly but serves no blobs to verifiers, then
posts the pre-state only once it is challenged, to win the challenger's bond.

On main a verifier that could not get a blob had two choices: attest blind, or challenge the
withheld segment of a correct trajectory and lose its bond when the solver posted the pre-state.
Data availability is the author's burden: the verifier sends a *data request* instead (a
``challenge`` with ``withheld: true``); the solver publishes the blob on chain, nobody is at
fault and the bond comes back — or it does not, and it is slashed.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts_sim.exceptions import (
    AlreadyChallengedError,
    DeadlinePassedError,
    MalformedBodyError,
    NotYourTurnError,
)
from contracts_sim.params import TEST
from contracts_sim.records import DisputeStatus, JobStatus, Phase
from contracts_sim.testing import LedgerHarness
from tests.dispute_agents import Run, make_run
from tests.ledger_helpers import committed_job, funded_harness, job

pytestmark = pytest.mark.adversarial

SEGMENT = 2


def data_request(job_id: str, run: Run, segment: int = SEGMENT) -> dict[str, Any]:
    tree = run.tree
    return {
        "job_id": job_id,
        "segment": segment,
        "pre_entry": run.leaves[segment].hex(),
        "post_entry": run.leaves[segment + 1].hex(),
        "pre_proof": tree.inclusion_proof(segment).to_json(),
        "post_proof": tree.inclusion_proof(segment + 1).to_json(),
        "withheld": True,
    }


def opened(h: LedgerHarness, run: Run) -> tuple[str, str]:
    job_id, _ = committed_job(h, leaves=list(run.leaves))
    receipt = h.send("v1", "challenge", data_request(job_id, run))
    return job_id, str(receipt.event("challenged").data["dispute_id"])


def blob_of_leaf(run: Run, leaf: int) -> bytes:
    return run.blobs[leaf * run.spec.checkpoint_interval]


def test_publishing_the_blob_returns_the_bond_and_reopens_the_window() -> None:
    h = funded_harness()
    run = make_run()
    job_id, dispute_id = opened(h, run)
    dispute = h.state.get_dispute(dispute_id)
    assert dispute.phase is Phase.POST_PRESTATE and dispute.data_request
    balance = h.account("v1").balance

    receipt = h.send(
        "solver",
        "post_prestate",
        {"dispute_id": dispute_id, "blob": blob_of_leaf(run, SEGMENT).hex()},
    )

    published = receipt.event("data_published").data
    assert published["leaf"] == SEGMENT
    dispute = h.state.get_dispute(dispute_id)
    assert dispute.status is DisputeStatus.DATA_PUBLISHED
    assert h.account("v1").balance == balance + TEST.challenge_bond
    record = job(h, job_id)
    assert record.open_disputes == 0 and record.status is JobStatus.COMMITTED
    assert record.challenge_deadline == h.height + TEST.challenge_window
    # The request was not a verdict: the verifier can still attest once it has checked.
    h.advance(2)  # the sample seed block
    h.send("v1", "attest", {"job_id": job_id})


def test_a_solver_that_does_not_publish_is_slashed() -> None:
    h = funded_harness()
    run = make_run()
    job_id, dispute_id = opened(h, run)
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    receipt = h.send("outsider", "claim_timeout", {"dispute_id": dispute_id})
    assert h.state.get_dispute(dispute_id).status is DisputeStatus.CHALLENGER_WON
    assert job(h, job_id).status is JobStatus.SLASHED
    assert "slashed" in receipt.kinds()


def test_only_the_solver_publishes_and_only_the_agreed_blob() -> None:
    h = funded_harness()
    run = make_run()
    _, dispute_id = opened(h, run)
    blob = blob_of_leaf(run, SEGMENT).hex()
    h.expect_error(
        "v1", "post_prestate", {"dispute_id": dispute_id, "blob": blob}, NotYourTurnError
    )
    wrong = blob_of_leaf(run, SEGMENT + 1).hex()
    h.expect_error("solver", "post_prestate", {"dispute_id": dispute_id, "blob": wrong})


def test_one_request_per_verifier_and_only_in_the_original_window() -> None:
    h = funded_harness()
    run = make_run()
    job_id, dispute_id = opened(h, run)
    h.expect_error(
        "v1", "challenge", data_request(job_id, run, SEGMENT + 1), AlreadyChallengedError
    )
    # Publishing late in the window reopens it; the reopened part takes verdicts only, so
    # verifiers cannot keep an honest solver's payment waiting window after window.
    record = job(h, job_id)
    assert record.final_height is not None
    original_deadline = record.final_height + TEST.challenge_window
    h.advance_to(h.state.get_dispute(dispute_id).deadline)
    blob = blob_of_leaf(run, SEGMENT).hex()
    h.send("solver", "post_prestate", {"dispute_id": dispute_id, "blob": blob})
    h.advance_to(original_deadline + 1)
    assert job(h, job_id).challenge_deadline > h.height
    h.expect_error("v2", "challenge", data_request(job_id, run), DeadlinePassedError)
    h.send("v2", "attest", {"job_id": job_id})


def test_a_data_request_names_its_segment() -> None:
    h = funded_harness()
    run = make_run()
    job_id, _ = committed_job(h, leaves=list(run.leaves))
    h.expect_error("v1", "challenge", {"job_id": job_id, "withheld": True}, MalformedBodyError)


@pytest.mark.parametrize("what", ["blobs", "leaves", "all"])
def test_in_process_the_verifier_asks_the_solver_publishes_and_nobody_pays(what: str) -> None:
    from services import scenarios
    from tests.adversarial.play import assert_outcome

    result = assert_outcome(scenarios.withhold_then_publish(what))
    (job,) = result.jobs
    assert job.status == "settled" and not job.bonds_lost and job.attesters
    # Every verifier met withheld data, asked for it, and attested once it was published.
    checks = [by_job[job.job_id] for by_job in result.checks.values()]
    assert checks and all(c.withheld and c.verdict.action == "attest" for c in checks)
    assert {c.verdict.reason for c in checks} == {"re-executed; withheld data published"}

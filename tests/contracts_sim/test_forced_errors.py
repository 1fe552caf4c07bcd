"""Forced errors: the rule, the reveal inside a dispute, audits of lazy attesters."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import torch

from contracts_sim.chain import DEADLINE_KINDS
from contracts_sim.exceptions import (
    AlreadyAuditedError,
    AlreadyChallengedError,
    DeadlineNotReachedError,
    DeadlinePassedError,
    HashMismatchError,
    MalformedBodyError,
    NotAForcedErrorError,
    NotAuthorizedError,
)
from contracts_sim.jobs import audit_window_end, get_job_spec, settle_height
from contracts_sim.params import TEST
from contracts_sim.records import Dispute, DisputeStatus, JobStatus, Party, Phase, Resolution
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    AttestBody,
    BidBody,
    ChallengeBody,
    ClaimTimeoutBody,
    CloseBiddingBody,
    FaucetBody,
    PublishDataBody,
    SettleBody,
)
from protocol.exact import init
from protocol.exact.forced_error import perturb, perturbed_element
from protocol.forced_errors import (
    catch_probability,
    draw_trap,
    lazy_attest_bond,
    lazy_expected_profit,
    segment_of_last_step,
    segment_secret,
    trap_commitment,
    trap_proof,
    trap_root,
    trap_step,
)
from protocol.merkle import verify_inclusion
from protocol.types import Amount, Hash32
from tests.dispute_agents import Run, next_body, tiny_spec
from tests.forced_error_players import (
    TrapSolver,
    close_window,
    fast_path,
    open_audits,
    open_empty_seals,
    sample_of,
    sealed_challenge,
    sealed_verdict,
    unseal,
    verifier_view,
)
from tests.ledger_helpers import funded_harness, job, post_job

ALL_TRAPS = TEST.with_changes(forced_error_bps=5_000)
"""Half the segments are forced errors (the most the chain allows): the scenarios find one
where they look (``with_trap_in_sample``)."""

# --- the rule --------------------------------------------------------------------------------


def test_trap_secrets_are_committed_per_segment() -> None:
    master = bytes(range(32))
    root = trap_root(master, "job", 8)
    for x in range(8):
        secret = segment_secret(master, "job", x)
        verify_inclusion(trap_commitment(secret), x, 8, root, trap_proof(master, "job", 8, x))
    assert len({segment_secret(master, "job", x) for x in range(8)}) == 8
    # Bound to the job: one master secret gives unrelated secrets on another job.
    assert segment_secret(master, "job", 0) != segment_secret(master, "other", 0)
    assert trap_root(master, "job", 8) != trap_root(master, "other", 8)


def test_draw_is_a_pure_function_and_hits_its_rate() -> None:
    beacon = Hash32(bytes(32))
    hits = sum(
        draw_trap(segment_secret(bytes(32), "job", x), beacon, "job", x, 1_000).is_trap
        for x in range(4_000)
    )
    assert 300 < hits < 500  # 10 % of 4,000 (binomial sd 19)
    secret = segment_secret(bytes(32), "job", 5)
    one = draw_trap(secret, beacon, "job", 5, 1_000)
    assert one == draw_trap(secret, beacon, "job", 5, 1_000)
    assert not draw_trap(secret, beacon, "job", 5, 0).is_trap


def test_trap_steps_are_segment_ends() -> None:
    assert trap_step(0, 4) == 3 and trap_step(2, 4) == 11
    assert segment_of_last_step(11, 4) == 2
    assert segment_of_last_step(10, 4) is None


def test_perturb_moves_one_element_one_unit_towards_zero() -> None:
    spec = tiny_spec()
    state = init(spec)
    for selector in (0, 1, 12345, 2**63 + 7):
        after = perturb(spec, state, selector)
        name, index = perturbed_element(spec, selector)
        changed = {k for k in state if not torch.equal(state[k], after[k])}
        assert changed == {name}
        before_value = int(state[name].view(-1)[index])
        after_value = int(after[name].view(-1)[index])
        assert abs(after_value - before_value) == 1
        assert abs(after_value) <= max(abs(before_value), 1)


def test_the_bond_makes_laziness_lose_in_expectation() -> None:
    for k, bps in [(1, 1_000), (3, 1_000), (2, 2_500), (8, 500), (2, 10_000)]:
        rho = catch_probability(k, bps)
        bond = lazy_attest_bond(1_000, k, bps, 10_001)  # just above the bound
        assert lazy_expected_profit(1_000, bond, rho) < 0
        assert lazy_expected_profit(500, bond, rho) < 0  # a smaller share loses too
        # at the bound itself (margin 1) it breaks even at most
        assert lazy_expected_profit(1_000, lazy_attest_bond(1_000, k, bps, 10_000), rho) <= 0
        margin = lazy_expected_profit(1_000, lazy_attest_bond(1_000, k, bps, 15_000), rho)
        assert margin <= -500  # F·(1 - margin)
    assert catch_probability(3, 1_000) == 1 - Fraction(9, 10) ** 3
    assert lazy_attest_bond(1_000, 3, 0, 15_000) == 0  # off: no bond


# --- the ledger ------------------------------------------------------------------------------


def committed_with_traps(
    h: LedgerHarness, plant: bool = True, cheat_step: int | None = None, **terms: Any
) -> tuple[str, TrapSolver, Run]:
    job_id = post_job(h, **terms)
    solver = TrapSolver(h, plant=plant)
    solver.bid(job_id)
    h.advance_to(job(h, job_id).bid_deadline + 1)
    h.send("outsider", CloseBiddingBody(job_id))
    h.advance(2)  # the beacon of the block after the assignment is known
    run = solver.run(job(h, job_id), cheat_step=cheat_step)
    solver.commit(job_id, run)
    h.advance(2)  # the sample seed
    return job_id, solver, run


def with_trap_in_sample(
    h: LedgerHarness,
    verifier: str = "v1",
    plant: bool = True,
    cheat_step: int | None = None,
    traps_needed: int = 1,
) -> tuple[str, TrapSolver, Run, list[int]]:
    """A committed job whose ``verifier`` samples at least ``traps_needed`` forced errors;
    returns it with the trapped segments of that sample."""
    for _ in range(20):
        job_id, solver, run = committed_with_traps(h, plant=plant, cheat_step=cheat_step)
        drawn = solver.draws(job(h, job_id))
        trapped = [x for x in sample_of(h, job_id, verifier) if x in drawn]
        if len(trapped) >= traps_needed:
            return job_id, solver, run, trapped
    raise AssertionError("no job with a trap in the sample in 20 tries")


def play_out(h: LedgerHarness, dispute_id: str, run: Run, view: Run, verifier: str) -> Dispute:
    """Both sides' honest moves in the current block until the dispute waits for a reveal or
    ends; returns it."""
    while (d := h.state.get_dispute(dispute_id)).status is DisputeStatus.OPEN:
        if d.phase is Phase.REVEAL_TRAP:
            return d
        role, body = next_body(d, run, view)
        h.send("solver" if role == "solver" else verifier, body)
    return d


def located_step(d: Dispute) -> int:
    """The step a dispute waiting for a reveal has located (the interval's lower end)."""
    assert d.phase is Phase.REVEAL_TRAP and d.step_lo is not None
    return d.step_lo


def settle_when_due(h: LedgerHarness, job_id: str) -> None:
    """Move past the audit window (or the last move, if later)."""
    h.advance_to(max(h.height, settle_height(job(h, job_id), h.params)))


def test_a_bid_must_commit_to_traps_while_they_are_on() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id = post_job(h)
    h.expect_error("solver", BidBody(job_id, Amount(800), 8), error=MalformedBodyError)


def test_challenges_of_a_job_with_traps_are_sealed_until_the_window_closes() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, _, run = committed_with_traps(h)
    segment = sample_of(h, job_id, "v1")[0]
    # The fast path in the clear would show every other verifier where a trap is.
    h.expect_error("v1", fast_path(job_id, segment, run), error=MalformedBodyError)
    dispute_id = sealed_challenge(h, job_id, "v1", segment)
    assert h.state.get_dispute(dispute_id).phase is Phase.UNSEAL
    body = unseal(h, job_id, dispute_id, "v1", segment, run)
    h.expect_error("v1", body, error=DeadlineNotReachedError)  # the window is open
    close_window(h, job_id)
    wrong = replace(body, segment=(segment + 1) % 8)
    h.expect_error("v1", wrong, error=HashMismatchError)  # not what it sealed
    h.send("v1", body)
    assert h.state.get_dispute(dispute_id).leaf_index == segment + 1


def test_an_unopened_seal_loses_its_bond() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, _, _ = committed_with_traps(h)
    start = h.account("v1").balance
    dispute_id = sealed_challenge(h, job_id, "v1", sample_of(h, job_id, "v1")[0])
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    h.send("outsider", ClaimTimeoutBody(None, dispute_id))
    assert h.state.get_dispute(dispute_id).status is DisputeStatus.SOLVER_WON
    assert h.account("v1").balance == start - h.params.challenge_bond


def test_an_honest_verifier_finds_a_forced_error_and_loses_nothing() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run, trapped = with_trap_in_sample(h)
    start = h.account("v1").balance
    sample = sample_of(h, job_id, "v1")
    for segment in sample:  # a trap, and only a trap, shows as a mismatch
        mismatch = run.leaves[segment + 1] != verifier_view(run, segment).leaves[segment + 1]
        assert mismatch == (segment in trapped)
    ids = sealed_verdict(h, job_id, "v1", trapped)  # seals (empty for the rest), attestation
    close_window(h, job_id)
    open_empty_seals(h, job_id, "v1", ids)
    for segment in trapped:
        dispute_id = ids[segment]
        h.send("v1", unseal(h, job_id, dispute_id, "v1", segment, run))
        d = play_out(h, dispute_id, run, verifier_view(run, segment), "v1")
        assert d.phase is Phase.REVEAL_TRAP and d.step_lo == trap_step(segment, 4)
        reveal = solver.reveal(job_id, dispute_id, segment, run, d.step_lo)
        receipt = h.send("solver", reveal)
        assert receipt.event("forced_error_confirmed").data["segment"] == segment
        assert h.state.get_dispute(dispute_id).status is DisputeStatus.FORCED_ERROR
        assert h.state.get_dispute(dispute_id).resolution is Resolution.FORCED_ERROR
    # Nothing left to audit: it challenged every trap of its sample.
    open_audits(h, job_id)
    h.expect_error("solver", solver.audit(job_id, "v1", trapped[0], run), error=MalformedBodyError)
    settle_when_due(h, job_id)
    h.send("outsider", SettleBody(job_id))
    assert job(h, job_id).status is JobStatus.SETTLED
    assert h.account("v1").balance == start + 90  # bonds back, paid as the attester it was


def test_a_solver_cannot_hide_a_cheat_behind_a_forced_error() -> None:
    """A reveal must prove the disputed segment's own secret; without one the solver loses by
    timeout like any party that does not move."""
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run, trapped = with_trap_in_sample(h)
    segment = trapped[0]
    dispute_id = sealed_challenge(h, job_id, "v1", segment)
    close_window(h, job_id)
    h.send("v1", unseal(h, job_id, dispute_id, "v1", segment, run))
    d = play_out(h, dispute_id, run, verifier_view(run, segment), "v1")
    assert d.phase is Phase.REVEAL_TRAP
    other = (segment + 1) % solver.segments
    wrong = replace(
        solver.reveal(job_id, dispute_id, other, run, located_step(d)),
        proof=trap_proof(solver.master, job_id, solver.segments, segment),
    )
    h.expect_error("solver", wrong)
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    h.send("outsider", ClaimTimeoutBody(None, dispute_id))
    assert job(h, job_id).status is JobStatus.SLASHED


def test_a_cheat_inside_a_trap_segment_is_located_at_its_step() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, _, cheat = committed_with_traps(h, cheat_step=5)  # segment 1, not its last step
    verifier = next((v for v in ("v1", "v2", "v3") if 1 in sample_of(h, job_id, v)), None)
    assert verifier is not None
    dispute_id = sealed_challenge(h, job_id, verifier, 1)
    close_window(h, job_id)
    h.send(verifier, unseal(h, job_id, dispute_id, verifier, 1, cheat))
    d = play_out(h, dispute_id, cheat, verifier_view(cheat, 1), verifier)
    assert d.status is DisputeStatus.CHALLENGER_WON and d.located_step == 5
    assert job(h, job_id).status is JobStatus.SLASHED


def test_a_trap_does_not_use_up_the_challenge_a_cheat_beside_it_needs() -> None:
    """A verifier whose sample holds a trap and a cheat challenges both (it cannot tell which
    is which): the cheat is located and slashed, the other game voided with its bond back."""
    h = funded_harness(params=ALL_TRAPS)
    cheat_at = 7 * 4 + 1  # inside the last segment
    found: list[str] = []
    for _ in range(30):  # until some verifier samples the last segment and a trap before it
        job_id, solver, cheat = committed_with_traps(h, cheat_step=cheat_at)
        drawn = solver.draws(job(h, job_id))
        found = [
            v
            for v in ("v1", "v2", "v3")
            if 7 in (sample := sample_of(h, job_id, v)) and sample[0] in drawn and sample[0] != 7
        ]
        if found:
            break
    verifier = found[0]
    sample = sample_of(h, job_id, verifier)
    ids = {x: sealed_challenge(h, job_id, verifier, x) for x in sample}
    h.expect_error(
        verifier,
        ChallengeBody(job_id, None, sealed=Hash32(bytes(32))),
        error=AlreadyChallengedError,
    )  # one seal per segment of its sample, at most
    close_window(h, job_id)
    h.send(verifier, unseal(h, job_id, ids[7], verifier, 7, cheat))
    d = play_out(h, ids[7], cheat, verifier_view(cheat, 7), verifier)
    assert d.status is DisputeStatus.CHALLENGER_WON and d.located_step == cheat_at
    assert job(h, job_id).status is JobStatus.SLASHED
    assert h.state.get_dispute(ids[sample[0]]).status is DisputeStatus.VOID
    assert h.state.get_dispute(ids[sample[0]]).resolution is Resolution.VOID


def test_a_lazy_attester_is_audited_and_forfeits_its_bond() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run, trapped = with_trap_in_sample(h, "v2")
    bond = job(h, job_id).attest_bond
    assert bond > 0
    start, solver_start = h.account("v2").balance, h.account("solver").balance
    seals = sealed_verdict(h, job_id, "v2", [])  # empty seals: it disputes nothing
    assert h.account("v2").balance == start - bond - 2 * h.params.challenge_bond
    segment = trapped[0]
    audit = solver.audit(job_id, "v2", segment, run)
    h.expect_error("solver", audit, error=DeadlineNotReachedError)  # window still open
    close_window(h, job_id)
    open_empty_seals(h, job_id, "v2", seals)  # opening empty seals takes no work
    open_audits(h, job_id)
    h.expect_error("outsider", audit, error=NotAuthorizedError)
    receipt = h.send("solver", audit)
    dispute_id = receipt.event("audit_opened").data["dispute_id"]
    h.expect_error("solver", audit, error=AlreadyAuditedError)
    d = h.state.get_dispute(dispute_id)
    h.advance()
    role, body = next_body(d, run, run)
    assert role == "solver"
    h.send("solver", body)  # the first midpoint; the lazy attester never answers
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    receipt = h.send("outsider", ClaimTimeoutBody(None, dispute_id))
    assert receipt.event("audit_resolved").data["attester_lost"] is True
    assert receipt.event("audit_resolved").data["resolution"] == "timeout_respond_midpoint"
    assert h.state.get_dispute(dispute_id).status is DisputeStatus.ATTESTER_LOST
    settle_when_due(h, job_id)
    h.send("outsider", SettleBody(job_id))
    assert h.account("v2").balance == start - bond  # no fee share, no bond back
    reward = bond * h.params.slash_reward_bps // 10_000
    assert h.account("solver").balance == solver_start + 800 + reward


def test_an_honest_attester_wins_an_audit_of_a_trap_never_planted() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run, trapped = with_trap_in_sample(h, "v2", plant=False)  # none planted
    start = h.account("v2").balance
    seals = sealed_verdict(h, job_id, "v2", [])  # every segment re-executes: nothing to dispute
    close_window(h, job_id)
    open_empty_seals(h, job_id, "v2", seals)
    open_audits(h, job_id)
    segment = trapped[0]
    receipt = h.send("solver", solver.audit(job_id, "v2", segment, run))
    dispute_id = receipt.event("audit_opened").data["dispute_id"]
    honest = verifier_view(run, segment)
    while (d := h.state.get_dispute(dispute_id)).status is DisputeStatus.OPEN:
        h.advance()
        role, body = next_body(d, run, honest)
        h.send("solver" if role == "solver" else "v2", body)
    assert d.status is DisputeStatus.AUDITOR_LOST and d.winner is Party.CHALLENGER
    assert d.resolution is Resolution.AUDIT_FORCED_ERROR  # the forced error was never planted
    settle_when_due(h, job_id)
    h.send("outsider", SettleBody(job_id))
    reward = h.params.challenge_bond * h.params.slash_reward_bps // 10_000
    assert h.account("v2").balance == start + 90 + reward  # fee, bond back, reward


def test_audit_guards() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run = committed_with_traps(h)
    seals = sealed_verdict(h, job_id, "v2", [])
    close_window(h, job_id)
    open_empty_seals(h, job_id, "v2", seals)
    open_audits(h, job_id)
    outside = next(x for x in range(solver.segments) if x not in sample_of(h, job_id, "v2"))
    h.expect_error("solver", solver.audit(job_id, "v2", outside, run), error=MalformedBodyError)
    h.expect_error(
        "solver", solver.audit(job_id, "v3", 0, run), error=MalformedBodyError
    )  # v3 never attested
    h.advance_to(audit_window_end(job(h, job_id), h.params) + 1)
    segment = sample_of(h, job_id, "v2")[0]
    h.expect_error("solver", solver.audit(job_id, "v2", segment, run), error=DeadlinePassedError)


def test_no_trap_no_audit() -> None:
    h = funded_harness(params=TEST.with_changes(forced_error_bps=1))
    job_id, solver, run = committed_with_traps(h)
    h.send("v2", FaucetBody(Amount(900_000)))  # a rare trap asks for a large bond
    seals = sealed_verdict(h, job_id, "v2", [])
    close_window(h, job_id)
    open_empty_seals(h, job_id, "v2", seals)
    open_audits(h, job_id)
    segment = sample_of(h, job_id, "v2")[0]
    assert segment not in solver.draws(job(h, job_id))  # 1 in 10,000
    h.expect_error("solver", solver.audit(job_id, "v2", segment, run), error=NotAForcedErrorError)


def _publish(run: Run, request_id: str, segment: int) -> PublishDataBody:
    return PublishDataBody(
        dispute_id=request_id,
        blob=run.blobs[segment * 4],
        pre_entry=Hash32(run.leaves[segment]),
        pre_proof=run.tree.inclusion_proof(segment),
        post_entry=Hash32(run.leaves[segment + 1]),
        post_proof=run.tree.inclusion_proof(segment + 1),
    )


SHORT = ALL_TRAPS.with_changes(challenge_window=8, move_timeout=3)


def test_a_data_request_cannot_make_an_honest_solver_miss_its_reveal() -> None:
    """Publishing requested data reopens the window; every move waiting for the window gets
    its deadline moved past the new end (red-team finding F1)."""
    h = funded_harness(params=SHORT)
    job_id, solver, run, trapped = with_trap_in_sample(h)
    sample = sorted(sample_of(h, job_id, "v1"), key=lambda x: x not in trapped)  # trap first
    dispute_id = sealed_challenge(h, job_id, "v1", sample[0])
    window_end = job(h, job_id).challenge_deadline
    assert window_end is not None
    h.advance_to(window_end - 1)
    request = ChallengeBody(job_id, None, data_segment=sample[1])
    request_id = h.send("v1", request).event("data_requested").data["dispute_id"]
    h.advance(2)  # past the original window: a reveal would now be allowed, but for the request
    h.send("solver", _publish(run, request_id, sample[1]))
    assert h.state.get_dispute(request_id).resolution is Resolution.DATA_PUBLISHED
    reopened = job(h, job_id).challenge_deadline
    assert reopened is not None and reopened > h.height
    assert h.state.get_dispute(dispute_id).deadline >= reopened + h.params.move_timeout
    close_window(h, job_id)
    h.send("v1", unseal(h, job_id, dispute_id, "v1", sample[0], run))
    d = play_out(h, dispute_id, run, verifier_view(run, sample[0]), "v1")
    reveal = solver.reveal(job_id, dispute_id, sample[0], run, located_step(d))
    h.send("solver", reveal)
    assert h.state.get_dispute(dispute_id).status is DisputeStatus.FORCED_ERROR


def test_no_move_that_waits_for_the_window_times_out_while_a_request_is_open() -> None:
    h = funded_harness(params=SHORT)
    job_id, _, _ = committed_with_traps(h)
    sample = sample_of(h, job_id, "v1")
    dispute_id = sealed_challenge(h, job_id, "v1", sample[0])
    window_end = job(h, job_id).challenge_deadline
    assert window_end is not None
    h.advance_to(window_end)
    for v in ("v2", "v1"):  # the second request gets a later deadline than the seal's
        segment = sample[1] if v == "v1" else sample_of(h, job_id, v)[0]
        h.send(v, ChallengeBody(job_id, None, data_segment=segment))
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    claim = ClaimTimeoutBody(None, dispute_id)
    h.expect_error("outsider", claim, error=DeadlineNotReachedError)


def test_forced_errors_off_change_nothing() -> None:
    h = funded_harness()
    job_id = post_job(h)
    assert job(h, job_id).attest_bond == 0 and TEST.forced_error_bps == 0
    # Room past a full block for the solver's audit, not for attestations anyone can send.
    assert "audit" in DEADLINE_KINDS and "attest" not in DEADLINE_KINDS


def test_an_attestation_follows_one_seal_per_sampled_segment() -> None:
    """Every verdict looks the same on chain: k seals, then the attestation (red-team N2)."""
    h = funded_harness(params=ALL_TRAPS)
    job_id, _, _ = committed_with_traps(h)
    h.expect_error("v2", AttestBody(job_id), error=MalformedBodyError)
    sealed_challenge(h, job_id, "v2", sample_of(h, job_id, "v2")[0])
    h.expect_error("v2", AttestBody(job_id), error=MalformedBodyError)  # one of two
    sealed_challenge(h, job_id, "v2", 8, nonce=1)  # an empty seal completes it
    h.send("v2", AttestBody(job_id))
    h.expect_error(
        "v2", ChallengeBody(job_id, None, sealed=Hash32(bytes(32))), error=AlreadyChallengedError
    )


def test_sealing_a_segment_that_re_executes_forfeits_the_attestation() -> None:
    """A lazy verifier cannot hide from audits by sealing its whole sample: a seal opened on a
    segment that re-executes loses its bond and the attestation beside it (red-team N1)."""
    h = funded_harness(params=ALL_TRAPS)
    job_id, _, run = committed_with_traps(h, plant=False)  # every segment re-executes
    start = h.account("v2").balance
    segment = sample_of(h, job_id, "v2")[0]
    ids = sealed_verdict(h, job_id, "v2", [segment])
    close_window(h, job_id)
    open_empty_seals(h, job_id, "v2", ids)
    h.send("v2", unseal(h, job_id, ids[segment], "v2", segment, run))
    d = play_out(h, ids[segment], run, run, "v2")  # it agrees with every midpoint
    assert d.status is DisputeStatus.SOLVER_WON
    assert h.address("v2") not in job(h, job_id).attesters
    settle_when_due(h, job_id)
    h.send("outsider", SettleBody(job_id))
    lost = job(h, job_id).attest_bond + h.params.challenge_bond
    assert h.account("v2").balance == start - lost  # no fee, no bonds back


def test_an_unopened_seal_forfeits_the_attestation() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, _, _ = committed_with_traps(h)
    ids = sealed_verdict(h, job_id, "v2", [])
    close_window(h, job_id)
    h.advance_to(max(h.state.get_dispute(i).deadline for i in ids.values()) + 1)
    for dispute_id in ids.values():
        h.send("outsider", ClaimTimeoutBody(None, dispute_id))
    assert h.address("v2") not in job(h, job_id).attesters


def test_jobs_of_one_spec_do_not_share_a_trajectory() -> None:
    """With forced errors each job's seed is mixed with its id, so two jobs of the same spec
    cannot be compared leaf by leaf to find the traps (red-team H1)."""
    h = funded_harness(params=ALL_TRAPS)
    first, second = post_job(h), post_job(h)
    seeds = {get_job_spec(job(h, j)).seed for j in (first, second)}
    assert len(seeds) == 2 and tiny_spec().seed not in seeds
    assert job(h, first).spec_hash != job(h, second).spec_hash
    plain = funded_harness()  # forced errors off: the submitter's spec as it is
    assert get_job_spec(job(plain, post_job(plain))).seed == tiny_spec().seed


def test_the_explorer_tells_a_forced_error_game_move_by_move() -> None:
    from services.node.explorer.timeline import dispute_timeline

    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run, trapped = with_trap_in_sample(h)
    segment = trapped[0]
    ids = sealed_verdict(h, job_id, "v1", [segment])
    close_window(h, job_id)
    open_empty_seals(h, job_id, "v1", ids)
    h.send("v1", unseal(h, job_id, ids[segment], "v1", segment, run))
    d = play_out(h, ids[segment], run, verifier_view(run, segment), "v1")
    h.send("solver", solver.reveal(job_id, d.dispute_id, segment, run, located_step(d)))
    texts = [e["text"] for e in dispute_timeline(h.state.get_dispute(d.dispute_id), job(h, job_id))]
    assert texts[0].startswith("sealed a challenge")
    assert texts[1].startswith(f"opened its seal: segment {segment}")
    assert texts[-1].startswith(f"revealed the forced error of segment {segment}")
    empty = next(i for key, i in ids.items() if key != segment)
    empty_texts = [e["text"] for e in dispute_timeline(h.state.get_dispute(empty), job(h, job_id))]
    assert empty_texts[-1] == "opened an empty seal: it disputes nothing"

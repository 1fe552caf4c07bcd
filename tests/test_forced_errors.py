"""Forced errors: the rule, the reveal inside a dispute, audits of lazy attesters."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch

from contracts_sim.exceptions import (
    AlreadyAuditedError,
    AlreadyChallengedError,
    DeadlineNotReachedError,
    DeadlinePassedError,
    MalformedBodyError,
    NotAForcedErrorError,
    NotAuthorizedError,
)
from contracts_sim.params import TEST
from contracts_sim.records import DisputeStatus, JobStatus, Party, Phase
from contracts_sim.testing import LedgerHarness
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
from tests.dispute_agents import make_run, next_move, tiny_spec
from tests.forced_error_players import TrapSolver, fast_path_challenge, sample_of, verifier_view
from tests.ledger_helpers import funded_harness, job, post_job

ALL_TRAPS = TEST.with_changes(forced_error_bps=10_000)
"""Every segment a forced error: the scenarios need one where they look."""

# --- the rule --------------------------------------------------------------------------------


def test_trap_secrets_are_committed_per_segment() -> None:
    master = bytes(range(32))
    root = trap_root(master, 8)
    for x in range(8):
        secret = segment_secret(master, x)
        verify_inclusion(trap_commitment(secret), x, 8, root, trap_proof(master, 8, x))
    assert len({segment_secret(master, x) for x in range(8)}) == 8


def test_draw_is_a_pure_function_and_hits_its_rate() -> None:
    beacon = bytes(32)
    hits = sum(
        draw_trap(segment_secret(bytes(32), x), beacon, "job", x, 1_000).is_trap
        for x in range(4_000)
    )
    assert 300 < hits < 500  # 10 % of 4,000 (binomial sd 19)
    one = draw_trap(segment_secret(bytes(32), 5), beacon, "job", 5, 1_000)
    assert one == draw_trap(segment_secret(bytes(32), 5), beacon, "job", 5, 1_000)
    assert not draw_trap(segment_secret(bytes(32), 5), beacon, "job", 5, 0).is_trap


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
    h: LedgerHarness, plant: bool = True, **terms: Any
) -> tuple[str, TrapSolver, Any]:
    job_id = post_job(h, **terms)
    solver = TrapSolver(h, plant=plant)
    solver.bid(job_id)
    h.advance_to(job(h, job_id).bid_deadline + 1)
    h.send("outsider", "close_bidding", {"job_id": job_id})
    h.advance(2)  # the beacon of the block after the assignment is known
    run = solver.run(job(h, job_id))
    solver.commit(job_id, run)
    h.advance(2)  # the sample seed
    return job_id, solver, run


def test_a_bid_must_commit_to_traps_while_they_are_on() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id = post_job(h)
    h.expect_error(
        "solver", "bid", {"job_id": job_id, "price": 800, "capacity": 8}, MalformedBodyError
    )


def test_an_honest_verifier_finds_a_forced_error_and_loses_nothing() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run = committed_with_traps(h)
    segment = sample_of(h, job_id, "v1")[0]
    honest = verifier_view(run, segment)
    assert run.leaves[segment + 1] != honest.leaves[segment + 1]  # a trap shows as a mismatch
    balance = h.account("v1").balance
    receipt = h.send("v1", "challenge", fast_path_challenge(h, job_id, segment, run))
    dispute_id = receipt.event("challenged").data["dispute_id"]
    while (d := h.state.get_dispute(dispute_id)).phase is not Phase.REVEAL_TRAP:
        role, kind, body = next_move(d, run, honest)  # all in one block: inside the window
        h.send("solver" if role == "solver" else "v1", kind, body)
    assert d.step_lo == trap_step(segment, 4)
    assert h.height <= job(h, job_id).challenge_deadline
    reveal = solver.reveal_body(dispute_id, segment, run, d.step_lo)
    # No reveal while verdicts can still be made knowing where a trap is.
    h.expect_error("solver", "reveal_trap", reveal, DeadlineNotReachedError)
    h.advance_to(job(h, job_id).challenge_deadline + 1)
    receipt = h.send("solver", "reveal_trap", reveal)
    assert receipt.event("forced_error_confirmed").data["segment"] == segment
    d = h.state.get_dispute(dispute_id)
    assert d.status is DisputeStatus.FORCED_ERROR
    assert h.account("v1").balance == balance  # the bond came back
    settle_when_due(h, job_id)
    receipt = h.send("outsider", "settle", {"job_id": job_id})
    assert job(h, job_id).status is JobStatus.SETTLED
    assert h.account("v1").balance == balance + 90  # paid as the attester it was


def test_a_solver_cannot_hide_a_cheat_behind_a_forced_error() -> None:
    """A reveal must prove the disputed segment's own secret; without one the solver loses by
    timeout like any party that does not move."""
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run = committed_with_traps(h)
    segment = sample_of(h, job_id, "v1")[0]
    receipt = h.send("v1", "challenge", fast_path_challenge(h, job_id, segment, run))
    dispute_id = receipt.event("challenged").data["dispute_id"]
    honest = verifier_view(run, segment)
    while (d := h.state.get_dispute(dispute_id)).phase is not Phase.REVEAL_TRAP:
        h.advance()
        role, kind, body = next_move(d, run, honest)
        h.send("solver" if role == "solver" else "v1", kind, body)
    h.advance_to(max(h.height, job(h, job_id).challenge_deadline + 1))
    other = (segment + 1) % solver.segments
    wrong = solver.reveal_body(dispute_id, other, run, d.step_lo)
    wrong["proof"] = trap_proof(solver.master, solver.segments, segment).to_json()
    h.expect_error("solver", "reveal_trap", wrong)
    # Missing the reveal deadline loses like any move.
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    receipt = h.send("outsider", "claim_timeout", {"dispute_id": dispute_id})
    assert job(h, job_id).status is JobStatus.SLASHED


def test_a_cheat_inside_a_trap_segment_is_located_at_its_step() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id = post_job(h)
    solver = TrapSolver(h)
    solver.bid(job_id)
    h.advance_to(job(h, job_id).bid_deadline + 1)
    h.send("outsider", "close_bidding", {"job_id": job_id})
    h.advance(2)
    cheat = make_run(cheat_step=5)  # inside segment 1, not its last step (7)
    solver.commit(job_id, cheat)
    h.advance(2)
    receipt = h.send("v1", "challenge", fast_path_challenge(h, job_id, 1, cheat))
    dispute_id = receipt.event("challenged").data["dispute_id"]
    honest = make_run()
    while (d := h.state.get_dispute(dispute_id)).status is DisputeStatus.OPEN:
        assert d.phase is not Phase.REVEAL_TRAP
        h.advance()
        role, kind, body = next_move(d, cheat, honest)
        h.send("solver" if role == "solver" else "v1", kind, body)
    assert d.status is DisputeStatus.CHALLENGER_WON and d.located_step == 5


def settle_when_due(h: LedgerHarness, job_id: str) -> None:
    """Move past the audit window (or the last move, if later)."""
    h.advance_to(max(h.height, job(h, job_id).challenge_deadline + h.params.audit_window + 1))


def _attest_and_close_window(h: LedgerHarness, job_id: str, *verifiers: str) -> None:
    for v in verifiers:
        h.send(v, "attest", {"job_id": job_id})
    h.advance_to(job(h, job_id).challenge_deadline + 1)


def test_a_lazy_attester_is_audited_and_forfeits_its_bond() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run = committed_with_traps(h)
    bond = job(h, job_id).attest_bond
    assert bond > 0
    start = h.account("v2").balance
    solver_start = h.account("solver").balance
    h.send("v2", "attest", {"job_id": job_id})
    assert h.account("v2").balance == start - bond
    segment = sample_of(h, job_id, "v2")[0]
    audit = solver.audit_body(job_id, "v2", segment, run)
    h.expect_error("solver", "audit", audit, DeadlineNotReachedError)  # window still open
    h.advance_to(job(h, job_id).challenge_deadline + 1)
    h.expect_error("outsider", "audit", audit, NotAuthorizedError)
    receipt = h.send("solver", "audit", audit)
    dispute_id = receipt.event("audit_opened").data["dispute_id"]
    h.expect_error("solver", "audit", audit, AlreadyAuditedError)
    d = h.state.get_dispute(dispute_id)
    h.advance()
    role, kind, body = next_move(d, run, run)
    assert role == "solver"
    h.send("solver", kind, body)  # the first midpoint; the lazy attester never answers
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    receipt = h.send("outsider", "claim_timeout", {"dispute_id": dispute_id})
    assert receipt.event("audit_resolved").data["attester_lost"] is True
    assert h.state.get_dispute(dispute_id).status is DisputeStatus.ATTESTER_LOST
    settle_when_due(h, job_id)
    h.send("outsider", "settle", {"job_id": job_id})
    assert h.account("v2").balance == start - bond  # no fee share, no bond back
    reward = bond * h.params.slash_reward_bps // 10_000
    assert h.account("solver").balance == solver_start + 800 + reward


def test_an_honest_attester_wins_an_audit_of_a_trap_never_planted() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run = committed_with_traps(h, plant=False)  # honest trajectory, no traps
    start = h.account("v2").balance
    _attest_and_close_window(h, job_id, "v2")
    segment = sample_of(h, job_id, "v2")[0]
    receipt = h.send("solver", "audit", solver.audit_body(job_id, "v2", segment, run))
    dispute_id = receipt.event("audit_opened").data["dispute_id"]
    honest = verifier_view(run, segment)
    while (d := h.state.get_dispute(dispute_id)).status is DisputeStatus.OPEN:
        h.advance()
        role, kind, body = next_move(d, run, honest)
        h.send("solver" if role == "solver" else "v2", kind, body)
    assert d.status is DisputeStatus.AUDITOR_LOST and d.winner is Party.CHALLENGER
    settle_when_due(h, job_id)
    h.send("outsider", "settle", {"job_id": job_id})
    reward = h.params.challenge_bond * h.params.slash_reward_bps // 10_000
    assert h.account("v2").balance == start + 90 + reward  # fee, bond back, reward


def test_audit_guards() -> None:
    h = funded_harness(params=ALL_TRAPS)
    job_id, solver, run = committed_with_traps(h)
    _attest_and_close_window(h, job_id, "v2")
    outside = next(x for x in range(solver.segments) if x not in sample_of(h, job_id, "v2"))
    h.expect_error(
        "solver", "audit", solver.audit_body(job_id, "v2", outside, run), MalformedBodyError
    )
    h.expect_error(
        "solver", "audit", solver.audit_body(job_id, "v3", 0, run), MalformedBodyError
    )  # v3 never attested
    settle_when_due(h, job_id)
    segment = sample_of(h, job_id, "v2")[0]
    h.expect_error(
        "solver", "audit", solver.audit_body(job_id, "v2", segment, run), DeadlinePassedError
    )


def test_no_trap_no_audit() -> None:
    h = funded_harness(params=TEST.with_changes(forced_error_bps=1))
    job_id, solver, run = committed_with_traps(h)
    h.send("v2", "faucet", {"amount": 900_000})  # a rare trap asks for a large bond
    _attest_and_close_window(h, job_id, "v2")
    segment = sample_of(h, job_id, "v2")[0]
    assert segment not in solver.draws(job(h, job_id))  # 1 in 10,000
    h.expect_error(
        "solver", "audit", solver.audit_body(job_id, "v2", segment, run), NotAForcedErrorError
    )


def test_forced_errors_off_change_nothing() -> None:
    h = funded_harness()
    job_id = post_job(h)
    assert job(h, job_id).attest_bond == 0 and TEST.forced_error_bps == 0


def test_a_trap_does_not_use_up_the_challenge_a_cheat_beside_it_needs() -> None:
    """A verifier whose sample holds a trap and a cheat challenges both (it cannot tell which
    is which): the cheat is located and slashed, the other game voided with its bond back."""
    h = funded_harness(params=ALL_TRAPS)
    c = tiny_spec().checkpoint_interval
    cheat_at = 7 * c + 1  # inside the last segment; every segment is a trap
    for _ in range(10):  # until some verifier samples the last segment and another one
        job_id = post_job(h)
        solver = TrapSolver(h)
        solver.bid(job_id)
        h.advance_to(job(h, job_id).bid_deadline + 1)
        h.send("outsider", "close_bidding", {"job_id": job_id})
        h.advance(2)
        cheat = solver.run(job(h, job_id), cheat_step=cheat_at)
        solver.commit(job_id, cheat)
        h.advance(2)
        found = [v for v in ("v1", "v2", "v3") if 7 in sample_of(h, job_id, v)]
        if found:
            break
    verifier = found[0]
    sample = sample_of(h, job_id, verifier)
    ids = {}
    for segment in sample:
        body = fast_path_challenge(h, job_id, segment, cheat)
        ids[segment] = h.send(verifier, "challenge", body).event("challenged").data["dispute_id"]
    again = fast_path_challenge(h, job_id, sample[0], cheat)
    h.expect_error(verifier, "challenge", again, AlreadyChallengedError)
    outside = next(x for x in range(solver.segments) if x not in sample)
    elsewhere = fast_path_challenge(h, job_id, outside, cheat)
    h.expect_error(verifier, "challenge", elsewhere, MalformedBodyError)
    view = verifier_view(cheat, 7)
    while (d := h.state.get_dispute(ids[7])).status is DisputeStatus.OPEN:
        role, kind, body = next_move(d, cheat, view)
        h.send("solver" if role == "solver" else verifier, kind, body)
    assert d.status is DisputeStatus.CHALLENGER_WON and d.located_step == cheat_at
    assert job(h, job_id).status is JobStatus.SLASHED
    assert h.state.get_dispute(ids[sample[0]]).status is DisputeStatus.VOID

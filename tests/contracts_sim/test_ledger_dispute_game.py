"""Scripted disputes on the ledger with the real exact VM.

Scenarios are data: who cheats (the solver perturbs the state after step s, or its initial
state), who is honest, who stops answering — and the outcome the ledger must reach: the loser,
the located step, the money.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from contracts_sim.exceptions import MalformedBodyError
from contracts_sim.params import BPS, TEST
from contracts_sim.records import DisputeStatus, JobStatus, Party, Phase, Resolution
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    ChallengeBody,
    PostMidpointBody,
    PostPrestateBody,
    RespondMidpointBody,
    SegmentEvidence,
    SettleBody,
)
from protocol.errors import EncodingError
from protocol.hashing import TensorRecord, encode_tensors, sha256
from protocol.state_commitment import blob_root
from protocol.types import Hash32
from tests.dispute_agents import Run, make_run, next_body, play
from tests.ledger_helpers import committed_job, final_commit, funded_harness, job

SLASH = 200  # JOB_TERMS["min_stake"]
BOND = TEST.challenge_bond


@dataclass(frozen=True)
class Scenario:
    name: str
    solver_cheat_step: int | None = None  # the solver's state after this step is perturbed
    solver_cheats_init: bool = False
    challenger_cheat_step: int | None = None  # a mistaken challenger's belief
    challenger_cheats_init: bool = False
    expected_loser: Party = Party.SOLVER
    expected_step: int | None = None


SCENARIOS = [
    Scenario("cheat at step 0", solver_cheat_step=0, expected_step=0),
    Scenario("cheat mid-segment", solver_cheat_step=13, expected_step=13),
    Scenario("cheat at a segment's last step", solver_cheat_step=19, expected_step=19),
    Scenario("cheat at the final step", solver_cheat_step=31, expected_step=31),
    Scenario(
        "false challenge mid-run",
        challenger_cheat_step=9,
        expected_loser=Party.CHALLENGER,
        expected_step=9,
    ),
    Scenario(
        "false challenge of leaf 0",
        challenger_cheats_init=True,
        expected_loser=Party.CHALLENGER,
        expected_step=None,
    ),
]


def _runs(s: Scenario) -> tuple[Run, Run]:
    return (
        make_run(s.solver_cheat_step, s.solver_cheats_init),
        make_run(s.challenger_cheat_step, s.challenger_cheats_init),
    )


def _open(h: LedgerHarness, solver: Run, challenger: str = "v1") -> tuple[str, str]:
    job_id, _ = committed_job(h, leaves=list(solver.leaves))
    h.advance(1)
    receipt = h.send(challenger, ChallengeBody(job_id, None))
    return job_id, str(receipt.event("challenged").data["dispute_id"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_dispute_names_the_step_and_punishes_the_liar(scenario: Scenario) -> None:
    h = funded_harness()
    solver_run, challenger_run = _runs(scenario)
    job_id, dispute_id = _open(h, solver_run)
    balances = {n: h.account(n).balance for n in ("solver", "v1", "submitter")}
    burned = h.state.get_supply().burned

    receipt = play(h, dispute_id, solver_run, challenger_run)

    resolved = receipt.event("dispute_resolved").data
    dispute = h.state.get_dispute(dispute_id)
    assert dispute.phase is Phase.RESOLVED and dispute.turn is Party.NOBODY
    assert resolved["loser_role"] == scenario.expected_loser
    assert resolved["located_step"] == dispute.located_step == scenario.expected_step
    if scenario.expected_step is None:
        assert resolved["leaf_index"] == 0
    decided = Resolution.LEAF_ZERO if scenario.expected_step is None else Resolution.ONE_STEP
    assert resolved["resolution"] == dispute.resolution == decided
    moves = [m.kind for m in dispute.moves]
    assert moves[0] == "challenge" and moves[-1] in ("post_prestate", "reveal_leaf")
    if scenario.expected_loser is Party.SOLVER:
        reward = SLASH * TEST.slash_reward_bps // BPS
        assert dispute.status is DisputeStatus.CHALLENGER_WON
        assert resolved["winner"] == h.address("v1")
        assert (resolved["slashed"], resolved["reward"]) == (SLASH, reward)
        assert job(h, job_id).status is JobStatus.SLASHED
        assert h.account("solver").locked == 0 and h.account("solver").jobs_slashed == 1
        assert h.account("v1").balance == balances["v1"] + BOND + reward
        assert h.account("submitter").balance == balances["submitter"] + 800 + 90
        assert h.state.get_supply().burned == burned + SLASH - reward
    else:
        reward = BOND * TEST.slash_reward_bps // BPS
        assert dispute.status is DisputeStatus.SOLVER_WON
        assert receipt.event("bond_forfeited").data["amount"] == BOND
        assert resolved["winner"] == h.address("solver")
        assert h.account("solver").balance == balances["solver"] + reward
        assert h.account("v1").balance == balances["v1"]  # the bond is gone
        assert h.state.get_supply().burned == burned + BOND - reward
        # The job survives the false challenge and settles normally.
        assert job(h, job_id).status is JobStatus.COMMITTED and job(h, job_id).open_disputes == 0
        h.advance_to(max(h.height, job(h, job_id).challenge_deadline) + 1)  # type: ignore[type-var, operator]
        h.send("outsider", SettleBody(job_id))
        assert job(h, job_id).status is JobStatus.SETTLED


def test_a_root_whose_leaf_0_is_not_the_initial_state_is_never_committed() -> None:
    """A solver that trains honestly from an initial state of its choosing would pass every
    sampled re-execution; commit_final recomputes state 0 and refuses its root instead (the
    referee's leaf-0 check remains for a challenger that disputes leaf 0)."""
    from contracts_sim.exceptions import InvalidProofError
    from tests.ledger_helpers import assign, post_job

    h = funded_harness()
    cheat = make_run(cheat_init=True)
    job_id = post_job(h)
    assign(h, job_id)
    error = h.expect_error("solver", final_commit(job_id, cheat.tree), error=InvalidProofError)
    assert error.what == "initial_proof"  # type: ignore[attr-defined]


def test_game_length_is_logarithmic() -> None:
    h = funded_harness()
    solver_run = make_run(cheat_step=22)
    _, dispute_id = _open(h, solver_run)
    play(h, dispute_id, solver_run, make_run())
    moves = h.state.get_dispute(dispute_id).moves
    # 9 leaves: at most 4 descent rounds (2 moves each); C = 4: 2 bisection rounds; 1 leaf
    # opening; 1 pre-state; plus the challenge itself.
    assert len(moves) <= 1 + 2 * 4 + 1 + 2 * 2 + 1


def test_fast_path_challenge_starts_at_step_bisection() -> None:
    h = funded_harness()
    solver_run, honest = make_run(cheat_step=21), make_run()
    job_id, _ = committed_job(h, leaves=list(solver_run.leaves))
    tree = solver_run.tree
    segment = 5  # steps 20..24 contain the cheat at 21
    evidence = SegmentEvidence(
        segment=segment,
        pre_entry=Hash32(solver_run.leaves[segment]),
        post_entry=Hash32(solver_run.leaves[segment + 1]),
        pre_proof=tree.inclusion_proof(segment),
        post_proof=tree.inclusion_proof(segment + 1),
    )
    receipt = h.send("v1", ChallengeBody(job_id, evidence))
    dispute_id = str(receipt.event("challenged").data["dispute_id"])
    dispute = h.state.get_dispute(dispute_id)
    assert dispute.phase is Phase.POST_MIDPOINT
    assert (dispute.step_lo, dispute.step_hi) == (20, 24)
    resolved = play(h, dispute_id, solver_run, honest).event("dispute_resolved").data
    assert resolved["located_step"] == 21 and resolved["loser_role"] == "solver"


def test_second_challenger_is_voided_when_the_first_wins_and_shares_the_reward() -> None:
    h = funded_harness()
    solver_run, honest = make_run(cheat_step=5), make_run()
    job_id, first = _open(h, solver_run, "v1")
    second = str(h.send("v2", ChallengeBody(job_id, None)).event("challenged").data["dispute_id"])
    assert job(h, job_id).open_disputes == 2
    before = {v: h.account(v).balance for v in ("v1", "v2")}

    receipt = play(h, first, solver_run, honest, names=("solver", "v1"))

    assert "dispute_voided" in receipt.kinds()
    other = h.state.get_dispute(second)
    assert other.status is DisputeStatus.VOID and other.phase is Phase.RESOLVED
    assert other.resolution is Resolution.VOID
    assert h.state.get_dispute(first).resolution is Resolution.ONE_STEP
    # Both challengers bonded the claim that the solver is wrong: both share the reward.
    share = SLASH * TEST.slash_reward_bps // BPS // 2
    rewards = {h.address("v1"): share, h.address("v2"): share}
    assert receipt.event("slashed").data["rewards"] == rewards
    assert h.account("v1").balance == before["v1"] + BOND + share
    assert h.account("v2").balance == before["v2"] + BOND + share
    assert job(h, job_id).open_disputes == 0 and job(h, job_id).status is JobStatus.SLASHED


def test_false_and_true_challengers_on_the_same_job() -> None:
    h = funded_harness()
    solver_run = make_run(cheat_step=27)
    job_id, false_id = _open(h, solver_run, "v1")
    true_id = str(h.send("v2", ChallengeBody(job_id, None)).event("challenged").data["dispute_id"])
    # v1 wrongly believes step 3 differs; v1's game ends first and v1 loses its bond.
    play(h, false_id, solver_run, make_run(cheat_step=3), names=("solver", "v1"), blocks_per_move=0)
    assert h.state.get_dispute(false_id).status is DisputeStatus.SOLVER_WON
    assert job(h, job_id).open_disputes == 1
    # v2 is right; the solver is slashed.
    resolved = play(h, true_id, solver_run, make_run(), names=("solver", "v2"))
    assert resolved.event("dispute_resolved").data["located_step"] == 27
    assert job(h, job_id).status is JobStatus.SLASHED


def test_invalid_pre_state_blob_loses_for_the_solver() -> None:
    """A solver whose agreed pre-state hash is the root of a blob that is not a state of the
    job's spec loses; bytes that are no state blob at all cannot be posted (they have no root)."""
    h = funded_harness()
    honest = make_run()
    _, dispute_id = _open(h, honest)
    garbage = encode_tensors([TensorRecord("other", "int64", (2,), bytes(16))])
    # A fast-path-free game where the challenger (colluding or careless) agrees with a garbage
    # midpoint hash, so the garbage becomes the agreed pre-state of the last step.
    d = h.state.get_dispute(dispute_id)
    while d.phase is not Phase.POST_MIDPOINT:
        role, body = next_body(d, honest, make_run(cheat_step=2))
        h.send("solver" if role == "solver" else "v1", body)
        d = h.state.get_dispute(dispute_id)
    h.send("solver", PostMidpointBody(dispute_id, claimed_hash(garbage)))
    h.send("v1", RespondMidpointBody(dispute_id, True))
    d = h.state.get_dispute(dispute_id)
    while d.phase is Phase.POST_MIDPOINT:
        h.send("solver", PostMidpointBody(dispute_id, claimed_hash(b"x")))
        h.send("v1", RespondMidpointBody(dispute_id, False))
        d = h.state.get_dispute(dispute_id)
    assert d.phase is Phase.POST_PRESTATE and d.hash_lo == blob_root(garbage)
    with pytest.raises(MalformedBodyError, match="not a state blob"):
        h.send("solver", PostPrestateBody(dispute_id, b"no blob"))
    assert h.state.get_dispute(dispute_id) == d  # the refused move changed nothing
    receipt = h.send("solver", PostPrestateBody(dispute_id, garbage))
    resolved = receipt.event("dispute_resolved").data
    assert resolved["loser_role"] == "solver" and "invalid" in resolved["reason"]
    assert resolved["resolution"] == Resolution.INVALID_PRESTATE


def claimed_hash(data: bytes) -> Hash32:
    """A hash the solver may claim: the root of ``data`` when it is a state blob."""
    try:
        return Hash32(blob_root(data))
    except EncodingError:
        return Hash32(sha256(data))


# --- timeouts -------------------------------------------------------------------------------


TIMEOUTS = [
    (Party.SOLVER, Phase.REVEAL_CHILDREN),
    (Party.CHALLENGER, Phase.CHOOSE_CHILD),
    (Party.SOLVER, Phase.REVEAL_LEAF),
    (Party.SOLVER, Phase.POST_MIDPOINT),
    (Party.CHALLENGER, Phase.RESPOND_MIDPOINT),
    (Party.SOLVER, Phase.POST_PRESTATE),  # withholding the checkpoint blob
]


@pytest.mark.parametrize(("party", "phase"), TIMEOUTS, ids=lambda x: str(x))
def test_the_party_that_stops_answering_loses(party: Party, phase: Phase) -> None:
    h = funded_harness()
    solver_run = make_run(cheat_step=14)
    job_id, dispute_id = _open(h, solver_run)
    receipt = play(h, dispute_id, solver_run, make_run(), stop=(party, phase))
    resolved = receipt.event("dispute_resolved").data
    assert resolved["loser_role"] == party
    assert resolved["located_step"] is None
    assert phase.value in resolved["reason"]
    dispute = h.state.get_dispute(dispute_id)
    assert resolved["resolution"] == dispute.resolution == Resolution.timeout(phase)
    assert dispute.moves[-1].kind == "claim_timeout"
    if party is Party.SOLVER:
        assert receipt.event("slashed").data["resolution"] == Resolution.timeout(phase)
    expected_job = JobStatus.SLASHED if party is Party.SOLVER else JobStatus.COMMITTED
    assert job(h, job_id).status is expected_job

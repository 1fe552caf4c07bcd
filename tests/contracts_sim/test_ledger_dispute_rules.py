"""The dispute rules one guard at a time: every illegal move is refused and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from contracts_sim.dispute import bisection_midpoint
from contracts_sim.exceptions import (
    DeadlineNotReachedError,
    DeadlinePassedError,
    DisputeClosedError,
    DisputeNotFoundError,
    HashMismatchError,
    InsufficientBalanceError,
    InsufficientStakeError,
    InvalidProofError,
    MalformedBodyError,
    NotAuthorizedError,
    NotYourTurnError,
    WrongJobStatusError,
    WrongPhaseError,
)
from contracts_sim.moves import MOVES, TURN, expected_phases
from contracts_sim.params import TEST
from contracts_sim.records import DisputeStatus, Party, Phase
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    ChallengeBody,
    ChooseChildBody,
    ClaimTimeoutBody,
    PostMidpointBody,
    PostPrestateBody,
    RespondMidpointBody,
    RevealChildrenBody,
    RevealLeafBody,
    SegmentEvidence,
    TransferBody,
    TxBody,
)
from protocol.merkle import NodeRef, children
from protocol.types import Amount, Hash32
from tests.dispute_agents import Run, make_run, next_move, play
from tests.ledger_helpers import committed_job, funded_harness, job, post_job

# --- the midpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "m"),
    [(0, 2, 1), (0, 3, 1), (0, 4, 2), (4, 8, 6), (5, 8, 6), (6, 8, 7), (0, 1000, 500), (7, 9, 8)],
)
def test_bisection_midpoint(a: int, b: int, m: int) -> None:
    assert bisection_midpoint(a, b) == m
    assert a < m < b


@pytest.mark.parametrize(("a", "b"), [(0, 1), (3, 4), (5, 5), (6, 4), (-1, 4), (True, 4), (0, 4.0)])
def test_bisection_midpoint_error_rows(a: object, b: object) -> None:
    with pytest.raises(ValueError):
        bisection_midpoint(a, b)  # type: ignore[arg-type]


def test_the_transition_table_is_complete() -> None:
    assert set(TURN) == set(Phase)
    assert {p for rule in MOVES.values() for p in rule.phases} == set(Phase) - {Phase.RESOLVED}


# --- fixtures -------------------------------------------------------------------------------

CHEATER = 13
ZERO = Hash32(b"\x00" * 32)


@pytest.fixture
def game() -> tuple[LedgerHarness, str, str, Run]:
    """A job whose solver cheated at step 13, challenged by v1 (phase reveal_children)."""
    h = funded_harness()
    solver_run = make_run(cheat_step=CHEATER)
    job_id, _ = committed_job(h, leaves=list(solver_run.leaves))
    receipt = h.send("v1", ChallengeBody(job_id, None))
    return h, job_id, str(receipt.event("challenged").data["dispute_id"]), solver_run


def _advance_to(h: LedgerHarness, dispute_id: str, phase: Phase, solver: Run) -> None:
    honest = make_run()
    names = {"solver": "solver", "challenger": "v1"}
    while (d := h.state.get_dispute(dispute_id)).phase is not phase:
        role, kind, body = next_move(d, solver, honest)
        h.send(names[role], kind, body)


def _children_body(h: LedgerHarness, dispute_id: str, solver: Run) -> RevealChildrenBody:
    d = h.state.get_dispute(dispute_id)
    left, right = children(NodeRef(d.node_lo, d.node_hi))  # type: ignore[arg-type]
    return RevealChildrenBody(
        dispute_id, Hash32(solver.tree.node_hash(left)), Hash32(solver.tree.node_hash(right))
    )


# --- challenge ------------------------------------------------------------------------------


def test_challenge_opens_descent_at_the_root(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, job_id, dispute_id, solver_run = game
    d = h.state.get_dispute(dispute_id)
    assert (d.phase, d.turn, d.status) == (Phase.REVEAL_CHILDREN, Party.SOLVER, DisputeStatus.OPEN)
    assert (d.node_lo, d.node_hi, d.node_hash) == (0, 9, solver_run.tree.root())
    assert d.deadline == h.height + TEST.move_timeout and d.bond == TEST.challenge_bond
    assert job(h, job_id).open_disputes == 1


def test_challenge_without_bond_money() -> None:
    h = funded_harness()
    job_id, _ = committed_job(h)
    h.send("v1", TransferBody(h.address("outsider"), Amount(900 - TEST.challenge_bond + 1)))
    h.expect_error("v1", ChallengeBody(job_id, None), error=InsufficientBalanceError)


def test_challenge_without_stake() -> None:
    h = funded_harness()
    job_id, _ = committed_job(h)
    h.expect_error("outsider", ChallengeBody(job_id, None), error=InsufficientStakeError)


def test_challenge_own_job() -> None:
    h = funded_harness()
    job_id, _ = committed_job(h)
    h.expect_error("solver", ChallengeBody(job_id, None), error=NotAuthorizedError)


def test_challenge_after_window() -> None:
    h = funded_harness()
    job_id, _ = committed_job(h)
    h.advance_to(job(h, job_id).challenge_deadline + 1)  # type: ignore[operator]
    h.expect_error("v1", ChallengeBody(job_id, None), error=DeadlinePassedError)


def test_challenge_before_final_commit() -> None:
    h = funded_harness()
    job_id = post_job(h)
    h.expect_error("v1", ChallengeBody(job_id, None), error=WrongJobStatusError)


def _fast_path(job_id: str, run: Run, seg: int, **overrides: Any) -> ChallengeBody:
    tree = run.tree
    evidence = SegmentEvidence(
        segment=seg,
        pre_entry=Hash32(run.leaves[seg]),
        post_entry=Hash32(run.leaves[seg + 1]),
        pre_proof=tree.inclusion_proof(seg),
        post_proof=tree.inclusion_proof(seg + 1),
    )
    return ChallengeBody(job_id, replace(evidence, **overrides))


def test_fast_path_with_wrong_evidence() -> None:
    h = funded_harness()
    solver_run = make_run(cheat_step=CHEATER)
    job_id, _ = committed_job(h, leaves=list(solver_run.leaves))
    honest = make_run()  # an entry the solver never committed, with the solver's own proof
    body = _fast_path(job_id, solver_run, 3, post_entry=Hash32(honest.leaves[4]))
    err = h.expect_error("v1", body, error=InvalidProofError)
    assert err.what == "post_proof"  # type: ignore[attr-defined]
    err = h.expect_error("v1", _fast_path(job_id, honest, 4), error=InvalidProofError)
    assert err.what == "pre_proof"  # type: ignore[attr-defined]
    h.expect_error("v1", _fast_path(job_id, solver_run, 3, segment=4), error=InvalidProofError)


def test_fast_path_segment_out_of_range() -> None:
    h = funded_harness()
    solver_run = make_run(cheat_step=CHEATER)
    job_id, _ = committed_job(h, leaves=list(solver_run.leaves))
    body = _fast_path(job_id, solver_run, 7, segment=8)
    err = h.expect_error("v1", body, error=MalformedBodyError)
    assert err.field == "segment"  # type: ignore[attr-defined]


def test_fast_path_fields_all_or_nothing() -> None:
    h = funded_harness()
    job_id, _ = committed_job(h)
    body = {"job_id": job_id, "segment": 2}  # a hand-made body: a fast path missing fields
    err = h.expect_error("v1", "challenge", body, MalformedBodyError)
    assert err.field == "pre_entry"  # type: ignore[attr-defined]


# --- moves ----------------------------------------------------------------------------------


def test_unknown_dispute(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, _, _ = game
    h.expect_error("solver", RevealChildrenBody("cd" * 32, ZERO, ZERO), error=DisputeNotFoundError)


def test_wrong_phase(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, _ = game
    err = h.expect_error("v1", ChooseChildBody(dispute_id, "left"), error=WrongPhaseError)
    assert (err.phase, err.expected) == ("reveal_children", "choose_child")  # type: ignore[attr-defined]


def test_not_your_turn(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    body = _children_body(h, dispute_id, solver_run)
    err = h.expect_error("v1", body, error=NotYourTurnError)
    assert err.expected == "solver"  # type: ignore[attr-defined]
    h.expect_error("outsider", body, error=NotYourTurnError)


def test_children_must_hash_to_the_node(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    body = _children_body(h, dispute_id, solver_run)
    swapped = replace(body, left=body.right, right=body.left)
    h.expect_error("solver", swapped, error=HashMismatchError)


def test_move_after_deadline(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    h.advance_to(h.state.get_dispute(dispute_id).deadline + 1)
    body = _children_body(h, dispute_id, solver_run)
    h.expect_error("solver", body, error=DeadlinePassedError)


def test_timeout_claimed_too_early(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, _ = game
    h.advance_to(h.state.get_dispute(dispute_id).deadline)
    h.expect_error("outsider", ClaimTimeoutBody(None, dispute_id), error=DeadlineNotReachedError)


def test_moves_on_a_closed_dispute(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    play(h, dispute_id, solver_run, make_run())
    err = h.expect_error(
        "solver", RevealChildrenBody(dispute_id, ZERO, ZERO), error=DisputeClosedError
    )
    assert err.status == "challenger_won"  # type: ignore[attr-defined]
    h.advance(10)
    h.expect_error("outsider", ClaimTimeoutBody(None, dispute_id), error=DisputeClosedError)


def test_descent_records_every_move(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    h.send("solver", _children_body(h, dispute_id, solver_run))
    d = h.state.get_dispute(dispute_id)
    assert (d.phase, d.turn) == (Phase.CHOOSE_CHILD, Party.CHALLENGER)
    assert d.left_hash is not None and d.right_hash is not None
    h.send("v1", ChooseChildBody(dispute_id, "right"))
    d = h.state.get_dispute(dispute_id)
    assert (d.node_lo, d.node_hi) == (8, 9) and d.phase is Phase.REVEAL_LEAF
    assert [m.kind for m in d.moves] == ["challenge", "reveal_children", "choose_child"]
    assert all(m.height == h.height for m in d.moves)


def test_leaf_entry_must_match(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    _advance_to(h, dispute_id, Phase.REVEAL_LEAF, solver_run)
    leaf = h.state.get_dispute(dispute_id).leaf_index
    assert leaf == CHEATER // 4 + 1
    body = RevealLeafBody(
        dispute_id,
        Hash32(solver_run.leaves[leaf - 1]),
        Hash32(solver_run.leaves[leaf - 1]),
        solver_run.tree.inclusion_proof(leaf - 1),
    )
    h.expect_error("solver", body, error=HashMismatchError)


def test_leaf_needs_the_agreed_predecessor(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    _advance_to(h, dispute_id, Phase.REVEAL_LEAF, solver_run)
    leaf = h.state.get_dispute(dispute_id).leaf_index
    assert leaf is not None
    base = RevealLeafBody(dispute_id, Hash32(solver_run.leaves[leaf]), None, None)
    err = h.expect_error("solver", base, error=MalformedBodyError)
    assert err.field == "pre_entry"  # type: ignore[attr-defined]
    wrong = replace(
        base,
        pre_entry=Hash32(solver_run.leaves[leaf - 2]),
        pre_proof=solver_run.tree.inclusion_proof(leaf - 1),
    )
    h.expect_error("solver", wrong, error=InvalidProofError)


def test_prestate_blob_must_be_the_agreed_state(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    _advance_to(h, dispute_id, Phase.POST_PRESTATE, solver_run)
    d = h.state.get_dispute(dispute_id)
    assert (d.step_lo, d.step_hi) == (CHEATER, CHEATER + 1)
    wrong_blob = solver_run.blobs[CHEATER + 1]
    h.expect_error("solver", PostPrestateBody(dispute_id, wrong_blob), error=HashMismatchError)
    h.expect_error(
        "outsider",
        PostPrestateBody(dispute_id, solver_run.blobs[CHEATER]),
        error=NotYourTurnError,
    )


def test_challenger_may_post_the_prestate(game: tuple[LedgerHarness, str, str, Run]) -> None:
    h, _, dispute_id, solver_run = game
    _advance_to(h, dispute_id, Phase.POST_PRESTATE, solver_run)
    receipt = h.send("v1", PostPrestateBody(dispute_id, make_run().blobs[CHEATER]))
    resolved = receipt.event("dispute_resolved").data
    assert resolved["loser_role"] == "solver" and resolved["located_step"] == CHEATER


def test_prestate_blob_size_limit() -> None:
    """post_job admits only specs whose state fits max_blob_bytes, so only a blob that is not
    the state (here: one byte too many) can be over the limit; it is refused before hashing."""
    h = funded_harness()
    solver_run = make_run(cheat_step=CHEATER)
    job_id, _ = committed_job(h, leaves=list(solver_run.leaves))
    dispute_id = str(
        h.send("v1", ChallengeBody(job_id, None)).event("challenged").data["dispute_id"]
    )
    _advance_to(h, dispute_id, Phase.POST_PRESTATE, solver_run)
    err = h.expect_error(
        "solver",
        PostPrestateBody(dispute_id, bytes(TEST.max_blob_bytes + 1)),
        error=MalformedBodyError,
    )
    assert err.field == "blob"  # type: ignore[attr-defined]


MOVE_BODIES: dict[str, Callable[[str], TxBody]] = {
    "reveal_children": lambda dispute_id: RevealChildrenBody(dispute_id, ZERO, ZERO),
    "choose_child": lambda dispute_id: ChooseChildBody(dispute_id, "left"),
    "reveal_leaf": lambda dispute_id: RevealLeafBody(dispute_id, ZERO, None, None),
    "post_midpoint": lambda dispute_id: PostMidpointBody(dispute_id, ZERO),
    "respond_midpoint": lambda dispute_id: RespondMidpointBody(dispute_id, True),
    "post_prestate": lambda dispute_id: PostPrestateBody(dispute_id, b"\x00"),
}


@pytest.mark.parametrize("kind", [k for k in MOVE_BODIES if k != "reveal_children"])
def test_every_move_is_refused_outside_its_phase(
    game: tuple[LedgerHarness, str, str, Run], kind: str
) -> None:
    h, _, dispute_id, _ = game  # phase: reveal_children
    for who in ("solver", "v1"):
        err = h.expect_error(who, MOVE_BODIES[kind](dispute_id), error=WrongPhaseError)
        assert err.expected == expected_phases(kind)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("phase", "kind", "intruder"),
    [
        (Phase.CHOOSE_CHILD, "choose_child", "solver"),
        (Phase.REVEAL_LEAF, "reveal_leaf", "v1"),
        (Phase.POST_MIDPOINT, "post_midpoint", "v1"),
        (Phase.RESPOND_MIDPOINT, "respond_midpoint", "solver"),
        (Phase.RESPOND_MIDPOINT, "respond_midpoint", "outsider"),
    ],
)
def test_every_move_is_refused_from_the_wrong_party(
    game: tuple[LedgerHarness, str, str, Run], phase: Phase, kind: str, intruder: str
) -> None:
    h, _, dispute_id, solver_run = game
    _advance_to(h, dispute_id, phase, solver_run)
    err = h.expect_error(intruder, MOVE_BODIES[kind](dispute_id), error=NotYourTurnError)
    assert err.expected == TURN[phase]  # type: ignore[attr-defined]


def test_admission_refuses_a_blob_from_someone_outside_the_dispute() -> None:
    """The node's pre-check (before hashing, verifying or locking): only the dispute's parties
    may post its pre-state, so a stranger cannot make the node hash a blob for any dispute."""
    from contracts_sim.chain import admit
    from contracts_sim.exceptions import NotYourTurnError

    h = funded_harness()
    solver_run = make_run(cheat_step=CHEATER)
    job_id, _ = committed_job(h, leaves=list(solver_run.leaves))
    dispute_id = str(
        h.send("v1", ChallengeBody(job_id, None)).event("challenged").data["dispute_id"]
    )
    _advance_to(h, dispute_id, Phase.POST_PRESTATE, solver_run)
    body = PostPrestateBody(dispute_id, b"\x00")
    with pytest.raises(NotYourTurnError):
        admit(h.state, body.kind, body.to_json(), h.address("outsider"), TEST)
    for party in ("solver", "v1"):
        admit(h.state, body.kind, body.to_json(), h.address(party), TEST)  # admitted

"""The move table (``contracts_sim.moves.MOVES``) against the games the tests play.

Every phase change of a dispute passes ``moves.require_transition``. Here it is wrapped to
record ``(phase before, move, phase after)`` while the game-playing tests of the dispute, forced
error and operator dispute modules run (their own players, unchanged); then every observed
change must be a row of the table, and every ``(move, next phase)`` of the table must have been
observed: the table lists no transition the rules never make.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

import contracts_sim.dispute
import contracts_sim.forced_errors
from contracts_sim import moves
from contracts_sim.moves import MOVES
from contracts_sim.params import TEST, Params
from contracts_sim.records import Dispute, Phase
from contracts_sim.transactions import ChallengeBody, CloseBiddingBody, SegmentEvidence
from protocol.exact.trace import program_of
from protocol.spec import parse_spec
from protocol.types import Hash32
from tests.conftest import tiny_spec_dict
from tests.contracts_sim import test_forced_errors, test_ledger_dispute_game, test_operator_disputes
from tests.forced_error_players import (
    TrapSolver,
    close_window,
    open_audits,
    open_empty_seals,
    sample_of,
    sealed_verdict,
    unseal,
)
from tests.ledger_helpers import committed_job, funded_harness, job, post_job
from tests.operator_players import Cheat, World
from tests.operator_players import play as play_game

Edge = tuple[Phase | None, str, Phase]  # (phase before, or None for an opening; move; after)

GAME_MODULES: tuple[ModuleType, ...] = (
    test_ledger_dispute_game,
    test_forced_errors,
    test_operator_disputes,
)


def _calls(fn: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    """The argument sets pytest would call ``fn`` with (its parametrize marks)."""
    grids: list[list[dict[str, Any]]] = []
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = []
        for value in values:
            value = value.values if hasattr(value, "values") else value  # pytest.param
            row = value if len(names) > 1 else (value,)
            rows.append(dict(zip(names, row, strict=True)))
        grids.append(rows)
    for combo in itertools.product(*grids):
        args: dict[str, Any] = {}
        for part in combo:
            args.update(part)
        yield args


def _game_tests() -> Iterator[tuple[str, Callable[..., Any], dict[str, Any]]]:
    """Every test of the game modules that needs no fixture, with each of its parameters."""
    for module in GAME_MODULES:
        for name, fn in vars(module).items():
            if not name.startswith("test_") or not callable(fn):
                continue
            params = set(inspect.signature(fn).parameters)
            for args in _calls(fn):
                if set(args) == params:
                    yield f"{module.__name__}.{name}", fn, args


# --- games of one-step segments (checkpoint_interval 1): the segment is the disputed step -----

ONE_STEP_SPEC = parse_spec(tiny_spec_dict(steps=4, checkpoint_interval=1))
OPERATOR = dataclasses.replace(TEST, operator_disputes=True)
ALL_TRAPS = TEST.with_changes(forced_error_bps=5_000)


def _one_step_game(params: Params, fast_path: bool) -> None:
    """A solver cheating at step 2 of a job whose segments are single steps, challenged by the
    descent (which ends in ``reveal_leaf``) or on the fast path: the next phase is the
    referee's at once (``post_prestate``, or ``commit_trace`` with operator disputes)."""
    last = len(program_of(ONE_STEP_SPEC).nodes) - 1
    solver, honest = World(ONE_STEP_SPEC, Cheat(step=2, ops=(last,))), World(ONE_STEP_SPEC)
    run = solver.as_run
    h = funded_harness(params=params)
    job_id, _ = committed_job(h, leaves=list(run.leaves), spec=ONE_STEP_SPEC.to_dict())
    h.advance(1)
    evidence = None
    if fast_path:
        tree, segment = run.tree, 2
        evidence = SegmentEvidence(
            segment,
            Hash32(run.leaves[segment]),
            Hash32(run.leaves[segment + 1]),
            tree.inclusion_proof(segment),
            tree.inclusion_proof(segment + 1),
        )
    receipt = h.send("v1", ChallengeBody(job_id, evidence))
    dispute_id = str(receipt.event("challenged").data["dispute_id"])
    play_game(h, dispute_id, solver, honest)


class _OneStepTrapSolver(TrapSolver):
    """The forced-error solver of the test players, on the one-step spec's segments."""

    @property
    def segments(self) -> int:
        return ONE_STEP_SPEC.num_segments


def _one_step_trap_games() -> None:
    """With forced errors, a seal and an audit of a one-step segment open at the referee's
    phase: an honest job (forced errors planted), a verifier that seals one segment of its
    sample and attests, the solver auditing it where its sample held a forced error."""
    h = funded_harness(params=ALL_TRAPS)
    for _ in range(20):  # until the verifier's sample holds a forced error
        job_id = post_job(h, spec=ONE_STEP_SPEC.to_dict())
        solver = _OneStepTrapSolver(h)
        solver.bid(job_id)
        h.advance_to(job(h, job_id).bid_deadline + 1)
        h.send("outsider", CloseBiddingBody(job_id))
        h.advance(2)  # the beacon of the block after the assignment
        run = solver.run(job(h, job_id))
        solver.commit(job_id, run)
        h.advance(2)  # the sample seed
        sample = sample_of(h, job_id, "v2")
        trapped = [x for x in sample if x in solver.draws(job(h, job_id))]
        if trapped:
            break
    else:
        raise AssertionError("no forced error in the sample in 20 jobs")
    sealed = next(x for x in sample if x != trapped[0])  # disputed; the forced error vouched for
    seals = sealed_verdict(h, job_id, "v2", [sealed])
    close_window(h, job_id)
    h.send("v2", unseal(h, job_id, seals[sealed], "v2", sealed, run))
    open_empty_seals(h, job_id, "v2", seals)
    open_audits(h, job_id)
    h.send("solver", solver.audit(job_id, "v2", trapped[0], run))


def _one_step_games() -> None:
    for params in (TEST, OPERATOR):
        for fast_path in (False, True):
            _one_step_game(params, fast_path)
    _one_step_trap_games()


UNPLAYED: dict[tuple[str, Phase], str] = {
    ("commit_trace", Phase.REVEAL_OP): "a step program of one operator (every spec has more)",
    ("reveal_op", Phase.NAME_ELEMENT): "an operator with an empty output",
    ("reveal_op", Phase.RESOLVED): "a solver opening an overflow entry it claimed not to have",
}
"""Rows of the table that no test plays yet, each with the game that would play it. The
test below fails as soon as one of them is played (remove it here then) or another row
goes unplayed."""


@pytest.fixture(scope="module")
def observed() -> set[Edge]:
    seen: set[Edge] = set()
    real = moves.require_transition

    def recording(before: Dispute, phase: Phase) -> None:
        kind = before.moves[-1].kind
        opening = MOVES.get(kind) is not None and not MOVES[kind].phases
        seen.add((None if opening else before.phase, kind, phase))
        real(before, phase)

    patch = pytest.MonkeyPatch()
    for module in (contracts_sim.dispute, contracts_sim.forced_errors):
        patch.setattr(module, "require_transition", recording)
    try:
        for _, fn, args in _game_tests():
            fn(**args)
        _one_step_games()
    finally:
        patch.undo()
    return seen


def test_the_game_tests_are_found() -> None:
    names = {name.rsplit(".", 1)[1] for name, _, _ in _game_tests()}
    assert "test_the_party_that_stops_answering_loses" in names
    assert "test_a_lazy_attester_is_audited_and_forfeits_its_bond" in names
    assert "test_mlp_cheat_is_located_at_its_operator" in names


def test_every_observed_transition_is_a_row_of_the_table(observed: set[Edge]) -> None:
    assert observed
    for before, kind, after in observed:
        rule = MOVES[kind]
        assert after in rule.next, (before, kind, after)
        if before is None:
            assert not rule.phases, kind
        else:
            assert before in rule.phases, (before, kind, after)


def test_every_row_of_the_table_is_played(observed: set[Edge]) -> None:
    table = {(kind, after) for kind, rule in MOVES.items() for after in rule.next}
    played = {(kind, after) for _, kind, after in observed}
    assert not set(UNPLAYED) & played, "played now: remove from UNPLAYED"
    unplayed = sorted(table - played - set(UNPLAYED))
    assert unplayed == [], [f"{kind} -> {phase.value}" for kind, phase in unplayed]


def test_a_timeout_is_claimed_in_every_phase_but_publish_data(observed: set[Edge]) -> None:
    """(A missed ``publish_data`` is played by the adversarial scenarios, a solver that
    withholds data: services' scenario catalogue, not these ledger modules.)"""
    timed_out = {before for before, kind, _ in observed if kind == "claim_timeout"}
    assert timed_out == set(moves.OPEN_PHASES) - {Phase.PUBLISH_DATA}

"""The honest player's tables (``services.agents.player``) against the ledger's move table
(``contracts_sim.moves``): the player has a move for a side exactly where the rules let that
side move, so an honest party is never left without an answer and never answers where the
ledger would refuse it. The games the tests play (``tests.dispute_agents``,
``tests.operator_players``, ``tests.forced_error_players``) check the moves themselves."""

from __future__ import annotations

import pytest

from contracts_sim.moves import MOVES, OPEN_PHASES, TURN
from contracts_sim.records import Party, Phase
from services.agents import player

SIDES = {
    Party.SOLVER: set(player.SOLVER_MOVES),
    Party.CHALLENGER: set(player.CHALLENGER_MOVES),
}


def _legal(side: Party) -> set[Phase]:
    """The open phases in which the rules take some move from ``side`` (a timeout claim aside:
    anyone may send one, and it is no answer to the game)."""
    return {
        phase
        for kind, rule in MOVES.items()
        if kind != "claim_timeout"
        for phase in rule.phases
        if side in rule.allowed(phase)
    }


@pytest.mark.parametrize("side", [Party.SOLVER, Party.CHALLENGER])
def test_the_player_moves_exactly_where_the_rules_take_a_move_of_its_side(side: Party) -> None:
    assert SIDES[side] == _legal(side)


def test_every_open_phase_has_an_honest_move_for_the_party_it_waits_for() -> None:
    for phase in OPEN_PHASES:
        assert phase in SIDES[TURN[phase]], phase


@pytest.mark.parametrize("phase", [Phase.REVEAL_CHILDREN, Phase.CHOOSE_CHILD])
def test_descent_phases_are_played_at_both_levels(phase: Phase) -> None:
    """The step-level and operator-level descents share these phases: the player answers
    each from the game under way (``in_operator_game``)."""
    side = TURN[phase]
    assert phase in SIDES[side] and phase in MOVES[phase.value].phases

"""The dispute game's move table: which move is legal in which phase, by whom, and where it
may lead (``docs/protocol.md``, "The dispute game").

``MOVES`` is the one table the rules read: ``contracts_sim.dispute.begin_move`` checks a move's
phase and party against it, and every phase change of a dispute (``require_transition``) must
be one of the next phases of the move that caused it, or the ledger raises
``InvariantViolation``. ``TURN`` is the other column: whose move each phase waits for (that
party loses when the phase's deadline passes).

Opening moves (``challenge``, ``audit``) are legal in no phase of an existing game: they open
one, in one of their next phases. ``claim_timeout`` is legal in every open phase, sent by
anyone, and ends the game. A dispute closed because its solver lost another dispute on the job
is *voided*: that is not a move of its own, and ``VOID_TRANSITION`` is its one phase change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contracts_sim.exceptions import InvariantViolation
from contracts_sim.records import Dispute, Party, Phase

TURN: Final[dict[Phase, Party]] = {
    Phase.REVEAL_CHILDREN: Party.SOLVER,
    Phase.CHOOSE_CHILD: Party.CHALLENGER,
    Phase.REVEAL_LEAF: Party.SOLVER,
    Phase.POST_MIDPOINT: Party.SOLVER,
    Phase.RESPOND_MIDPOINT: Party.CHALLENGER,
    Phase.POST_PRESTATE: Party.SOLVER,  # the challenger may post it too (``MOVES``)
    Phase.PUBLISH_DATA: Party.SOLVER,
    Phase.UNSEAL: Party.CHALLENGER,
    Phase.REVEAL_TRAP: Party.SOLVER,
    Phase.COMMIT_TRACE: Party.SOLVER,
    Phase.REVEAL_OP: Party.SOLVER,
    Phase.PROVE_OVERFLOW: Party.SOLVER,
    Phase.REVEAL_CHUNK: Party.SOLVER,
    Phase.NAME_ELEMENT: Party.CHALLENGER,
    Phase.POST_PIECES: Party.SOLVER,
    Phase.RESOLVED: Party.NOBODY,
}
"""Whose move each phase waits for; that party loses if the deadline passes."""

OPEN_PHASES: Final = tuple(p for p in Phase if p is not Phase.RESOLVED)
ANYONE: Final = frozenset(Party)
"""``claim_timeout``: any account (a party of the game or not, ``Party.NOBODY``)."""
EITHER: Final = frozenset({Party.SOLVER, Party.CHALLENGER})


@dataclass(frozen=True)
class MoveRule:
    """One row of the move table."""

    phases: tuple[Phase, ...]
    """Where the move is legal (empty: it opens a game)."""
    next: frozenset[Phase]
    """The phases it may lead to (``Phase.RESOLVED``: it may end the game)."""
    by: frozenset[Party] | None = None
    """Who may send it; None: the party whose turn it is in the phase (``TURN``)."""

    def allowed(self, phase: Phase) -> frozenset[Party]:
        """The parties that may make this move in ``phase``."""
        return self.by if self.by is not None else frozenset({TURN[phase]})


def _rule(
    phases: tuple[Phase, ...], *next_phases: Phase, by: frozenset[Party] | None = None
) -> MoveRule:
    return MoveRule(phases, frozenset(next_phases), by)


P = Phase
MOVES: Final[dict[str, MoveRule]] = {
    # Opening a game: a challenge (plain: the descent; fast path: bisection or the one-step
    # phase; a data request; a sealed challenge) or a solver's audit of an attester.
    "challenge": _rule(
        (),
        P.REVEAL_CHILDREN,
        P.POST_MIDPOINT,
        P.POST_PRESTATE,
        P.COMMIT_TRACE,
        P.PUBLISH_DATA,
        P.UNSEAL,
        by=frozenset({Party.CHALLENGER}),
    ),
    "audit": _rule((), P.POST_MIDPOINT, P.POST_PRESTATE, by=frozenset({Party.SOLVER})),
    # The trajectory descent (and, in an operator dispute, the trace's and the chunks').
    "reveal_children": _rule((P.REVEAL_CHILDREN,), P.CHOOSE_CHILD),
    "choose_child": _rule(
        (P.CHOOSE_CHILD,), P.REVEAL_CHILDREN, P.REVEAL_LEAF, P.REVEAL_OP, P.REVEAL_CHUNK
    ),
    "reveal_leaf": _rule(
        (P.REVEAL_LEAF,), P.POST_MIDPOINT, P.POST_PRESTATE, P.COMMIT_TRACE, P.RESOLVED
    ),
    # Bisection.
    "post_midpoint": _rule((P.POST_MIDPOINT,), P.RESPOND_MIDPOINT),
    "respond_midpoint": _rule(
        (P.RESPOND_MIDPOINT,), P.POST_MIDPOINT, P.POST_PRESTATE, P.COMMIT_TRACE
    ),
    # One step: the referee.
    "post_prestate": _rule((P.POST_PRESTATE,), P.RESOLVED, P.REVEAL_TRAP, by=EITHER),
    # Data availability and forced errors (contracts_sim.forced_errors).
    "publish_data": _rule((P.PUBLISH_DATA,), P.RESOLVED),
    "unseal": _rule((P.UNSEAL,), P.POST_MIDPOINT, P.POST_PRESTATE, P.RESOLVED),
    "reveal_trap": _rule((P.REVEAL_TRAP,), P.RESOLVED),
    # Operator disputes (contracts_sim.operator_dispute).
    "commit_trace": _rule((P.COMMIT_TRACE,), P.REVEAL_CHILDREN, P.REVEAL_OP),
    "reveal_op": _rule(
        (P.REVEAL_OP,),
        P.PROVE_OVERFLOW,
        P.REVEAL_CHILDREN,
        P.REVEAL_CHUNK,
        P.NAME_ELEMENT,
        P.RESOLVED,
    ),
    "reveal_chunk": _rule((P.REVEAL_CHUNK,), P.NAME_ELEMENT),
    "name_element": _rule((P.NAME_ELEMENT,), P.POST_PIECES),
    "post_pieces": _rule((P.POST_PIECES,), P.RESOLVED),
    "show_overflow": _rule((P.PROVE_OVERFLOW, P.CHOOSE_CHILD, P.NAME_ELEMENT), P.RESOLVED),
    # Anyone, once the party to move let its deadline pass.
    "claim_timeout": _rule(OPEN_PHASES, P.RESOLVED, by=ANYONE),
}
"""Every move of the dispute game: where it is legal, by whom, and where it may lead."""

GAME_MOVES: Final = frozenset(kind for kind, rule in MOVES.items() if rule.phases)
"""The moves made inside an open game (every kind but the opening ones)."""

VOID_TRANSITION: Final = (OPEN_PHASES, Phase.RESOLVED)
"""A dispute voided because its solver lost another game: from any open phase to resolved."""


def expected_phases(kind: str) -> str:
    """The phase(s) ``kind`` is legal in, as ``WrongPhaseError`` names them."""
    return " or ".join(MOVES[kind].phases)


def require_transition(before: Dispute, phase: Phase) -> None:
    """``before``'s last move may lead to ``phase``: every phase change of a game passes here.

    ``before`` is the dispute with the move that causes the change already recorded (the
    opening move, for a new game). A change the table does not list is a bug in the rules.
    """
    kind = before.moves[-1].kind
    rule = MOVES.get(kind)
    if rule is None or phase not in rule.next:
        raise InvariantViolation(
            f"dispute {before.dispute_id}: {kind} from {before.phase.value} cannot lead to "
            f"{phase.value} (contracts_sim.moves.MOVES)"
        )

"""The honest dispute player: for each phase, the move the protocol asks of each side.

One implementation, written as a table from ``Phase`` to the function that makes the move,
one table per side (``SOLVER_MOVES``, ``CHALLENGER_MOVES``). The solver and verifier agents
play it, and so do the tests' scripted players (``tests.dispute_agents``,
``tests.operator_players``, ``tests.forced_error_players``); a cheating strategy changes or
withholds the move it returns. The rules never see what a side believes, only its moves
(``docs/protocol.md``, "The dispute game").

A side answers from what it believes the job's trajectory is, nothing else:

    phase              solver (``Claims``)                 challenger (``Checks``)
    reveal_children    the node's two children             -
    choose_child       -                                   the left child if it disagrees
                                                           with it, else the right one
    reveal_leaf        the disputed leaf (and the one      -
                       before it, with its proof)
    post_midpoint      its state hash at the midpoint      -
    respond_midpoint   -                                   whether it agrees with that hash
    post_prestate      its state at the step's start       the same, only when it disagrees
                                                           with the claimed post-state and
                                                           holds a state hashing to hash_lo
    publish_data       the requested leaf's blob, proved   -
    reveal_trap        the forced error's secret, proved   -
    unseal             -                                   what its seal hides

    operator level, from the side's own run of the disputed step
    (``services.agents.operator_moves``):
    commit_trace       its trace's root, state roots, proofs  -
    reveal_children    the node's children (trace / chunks)   -
    choose_child       -                                   the child it disagrees with,
                                                           or show_overflow
    reveal_op          op k's entry (output root/overflow) -
    prove_overflow     show_overflow: why op k overflows   -
    reveal_chunk       the chunk of op k's output          -
    name_element       -                                   the first element it disagrees
                                                           with, or show_overflow
    post_pieces        what that element reads, proved     -

``reveal_children`` and ``choose_child`` are phases of both levels: a dispute with an operator
game under way (``in_operator_game``) is answered at the operator level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from contracts_sim.dispute import bisection_midpoint
from contracts_sim.records import Dispute, Party, Phase
from contracts_sim.transactions import (
    ChooseChildBody,
    PostMidpointBody,
    PostPrestateBody,
    PublishDataBody,
    RespondMidpointBody,
    RevealChildrenBody,
    RevealLeafBody,
    RevealTrapBody,
    TxBody,
    UnsealBody,
)
from protocol.merkle import InclusionProof, NodeRef, children
from protocol.state_commitment import blob_has_root
from protocol.types import Hash32
from services.agents import operator_moves
from services.agents.moves import Move


class Side(Protocol):
    """What one party believes the disputed job's trajectory is."""

    def node_hash(self, node: NodeRef) -> bytes | None:
        """The hash of a node of its commitment tree over the leaves (None: it cannot tell)."""

    def hash_at(self, step: int) -> bytes | None:
        """Its state hash after ``step`` steps (None: it cannot tell)."""

    def blob_at(self, step: int) -> bytes | None:
        """Its state after ``step`` steps, encoded (None: it has none)."""

    def operator_step(self, dispute: Dispute) -> operator_moves.OwnStep | None:
        """Its own run of the disputed step, for the operator-level game (None: none)."""


class Claims(Side, Protocol):
    """The solver's side: its committed trajectory, and what it must show on request."""

    def leaf(self, index: int) -> bytes:
        """Its committed leaf ``index``."""

    def leaf_proof(self, index: int) -> InclusionProof:
        """The inclusion proof of its leaf ``index`` in its committed root."""

    def published_data(self, dispute: Dispute) -> PublishDataBody | None:
        """A data request's answer: the requested leaf's blob and both leaves of its segment,
        proved (None: it has no such data)."""

    def trap_reveal(self, dispute: Dispute) -> RevealTrapBody | None:
        """The reveal of the forced error at the disputed step (None: not one of its own)."""


class Checks(Side, Protocol):
    """The challenger's side: its own re-execution, and the seals it made."""

    def agreed_blob(self, step: int) -> bytes | None:
        """A state at ``step`` the game started from (a fast-path challenge's committed
        pre-state), posted whatever the claimed post-state; None for any other step."""

    def unseal(self, dispute: Dispute) -> UnsealBody | None:
        """What its sealed challenge hides (None: it cannot open it)."""


def in_operator_game(d: Dispute) -> bool:
    """The dispute waits on an operator-level move (``commit_trace`` and after)."""
    return d.operator is not None or d.phase is Phase.COMMIT_TRACE


def _move(body: TxBody | None) -> Move | None:
    return None if body is None else Move.of(body)


def _node(d: Dispute) -> NodeRef:
    assert d.node_lo is not None and d.node_hi is not None
    return NodeRef(d.node_lo, d.node_hi)


def _steps(d: Dispute) -> tuple[int, int]:
    assert d.step_lo is not None and d.step_hi is not None
    return d.step_lo, d.step_hi


# --- the operator-level game -------------------------------------------------------------


OperatorMove = Callable[[Dispute, operator_moves.OwnStep], TxBody]


def from_own_step(make: OperatorMove) -> Callable[[Dispute, Side], Move | None]:
    """An operator-level move (``services.agents.operator_moves``), made from the side's own
    run of the disputed step."""

    def move(d: Dispute, me: Side) -> Move | None:
        own = me.operator_step(d)
        if own is None:
            return None  # no run of its own to play from: the deadline decides
        return Move.of(make(d, own))

    move.__name__ = make.__name__
    return move


_commit_trace = from_own_step(operator_moves.commit_trace)
_reveal_op_children = from_own_step(operator_moves.reveal_children)
_reveal_op = from_own_step(operator_moves.reveal_op)
_prove_overflow = from_own_step(operator_moves.prove_overflow)
_reveal_chunk = from_own_step(operator_moves.reveal_chunk)
_post_pieces = from_own_step(operator_moves.post_pieces)
_choose_op_child = from_own_step(operator_moves.choose_child)
_name_element = from_own_step(operator_moves.name_element)


# --- the solver's moves ----------------------------------------------------------------------


def reveal_children(d: Dispute, me: Claims) -> Move | None:
    if in_operator_game(d):
        return _reveal_op_children(d, me)
    left, right = children(_node(d))
    left_hash, right_hash = me.node_hash(left), me.node_hash(right)
    if left_hash is None or right_hash is None:
        return None
    return _move(RevealChildrenBody(d.dispute_id, Hash32(left_hash), Hash32(right_hash)))


def reveal_leaf(d: Dispute, me: Claims) -> Move | None:
    leaf = d.leaf_index
    assert leaf is not None
    entry = Hash32(me.leaf(leaf))
    if leaf == 0:
        return _move(RevealLeafBody(d.dispute_id, entry, None, None))
    pre_entry, pre_proof = Hash32(me.leaf(leaf - 1)), me.leaf_proof(leaf - 1)
    return _move(RevealLeafBody(d.dispute_id, entry, pre_entry, pre_proof))


def post_midpoint(d: Dispute, me: Claims) -> Move | None:
    claimed = me.hash_at(bisection_midpoint(*_steps(d)))
    return None if claimed is None else _move(PostMidpointBody(d.dispute_id, Hash32(claimed)))


def post_own_prestate(d: Dispute, me: Claims) -> Move | None:
    """The solver's state at the step's start, which its own claims hash to ``hash_lo``."""
    blob = me.blob_at(_steps(d)[0])
    return None if blob is None else _move(PostPrestateBody(d.dispute_id, blob))


def publish_data(d: Dispute, me: Claims) -> Move | None:
    return _move(me.published_data(d))


def reveal_trap(d: Dispute, me: Claims) -> Move | None:
    return _move(me.trap_reveal(d))


# --- the challenger's moves --------------------------------------------------------------------


def choose_child(d: Dispute, me: Checks) -> Move | None:
    if in_operator_game(d):
        return _choose_op_child(d, me)
    left, _ = children(_node(d))
    mine = me.node_hash(left)
    if mine is None:
        return None
    return _move(ChooseChildBody(d.dispute_id, "left" if d.left_hash != mine else "right"))


def respond_midpoint(d: Dispute, me: Checks) -> Move | None:
    mine = me.hash_at(bisection_midpoint(*_steps(d)))
    agree = mine is not None and d.midpoint_hash == mine
    return _move(RespondMidpointBody(d.dispute_id, agree))


def post_agreed_prestate(d: Dispute, me: Checks) -> Move | None:
    """The pre-state, posted by the challenger only when the solver's claimed post-state is
    wrong by its own run and it holds the agreed pre-state: otherwise the solver posts it."""
    a, b = _steps(d)
    blob = me.agreed_blob(a)
    if blob is None:
        mine = me.hash_at(b)
        if mine is None or mine == d.hash_hi:
            return None  # the solver's claim is right (or it cannot tell): the solver posts
        blob = me.blob_at(a)
        if blob is None or d.hash_lo is None or not blob_has_root(blob, d.hash_lo):
            return None
    return _move(PostPrestateBody(d.dispute_id, blob))


def unseal(d: Dispute, me: Checks) -> Move | None:
    return _move(me.unseal(d))


SOLVER_MOVES: dict[Phase, Callable[[Dispute, Claims], Move | None]] = {
    Phase.REVEAL_CHILDREN: reveal_children,
    Phase.REVEAL_LEAF: reveal_leaf,
    Phase.POST_MIDPOINT: post_midpoint,
    Phase.POST_PRESTATE: post_own_prestate,
    Phase.PUBLISH_DATA: publish_data,
    Phase.REVEAL_TRAP: reveal_trap,
    Phase.COMMIT_TRACE: _commit_trace,
    Phase.REVEAL_OP: _reveal_op,
    Phase.PROVE_OVERFLOW: _prove_overflow,
    Phase.REVEAL_CHUNK: _reveal_chunk,
    Phase.POST_PIECES: _post_pieces,
}
"""The solver's move in each phase it may move in."""

CHALLENGER_MOVES: dict[Phase, Callable[[Dispute, Checks], Move | None]] = {
    Phase.CHOOSE_CHILD: choose_child,
    Phase.RESPOND_MIDPOINT: respond_midpoint,
    Phase.POST_PRESTATE: post_agreed_prestate,
    Phase.UNSEAL: unseal,
    Phase.NAME_ELEMENT: _name_element,
}
"""The challenger's move in each phase it may move in."""


def moves_in(side: Party, d: Dispute) -> bool:
    """``side`` has a move in ``d``'s phase (its turn, or a move either party may make)."""
    table: dict[Phase, Any] = SOLVER_MOVES if side is Party.SOLVER else CHALLENGER_MOVES
    return side in (Party.SOLVER, Party.CHALLENGER) and d.phase in table


def solver_move(d: Dispute, me: Claims) -> Move | None:
    """The honest solver's move in ``d`` (None: it has none to make, or nothing to make it
    from)."""
    make = SOLVER_MOVES.get(d.phase)
    return None if make is None else make(d, me)


def challenger_move(d: Dispute, me: Checks) -> Move | None:
    """The honest challenger's move in ``d`` (None: it has none to make, or nothing to make
    it from)."""
    make = CHALLENGER_MOVES.get(d.phase)
    return None if make is None else make(d, me)

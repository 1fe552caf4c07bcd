"""Scripted dispute players for ledger tests, driven by real exact-VM trajectories.

A ``Run`` is what one party believes the job's trajectory is: every per-step state hash and
blob, the leaves and the commitment tree. A cheating solver is a run perturbed after step s (or
at the initial state); a mistaken challenger is the same thing on the other side. ``play`` lets
the two runs play the game move by move through the ledger (one block per move) — the rules
never see the runs, only the moves — optionally stopping one party at a phase so the other
claims the timeout. These are test strategies; the real agents live in ``services/``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from contracts_sim.records import Dispute, DisputeStatus, Party, Phase
from contracts_sim.testing import LedgerHarness, Receipt
from contracts_sim.transactions import (
    ClaimTimeoutBody,
    PublishDataBody,
    RevealTrapBody,
    TxBody,
    UnsealBody,
    parse_body,
)
from protocol.exact import State, encode_state, init, step
from protocol.merkle import CommitmentTree, InclusionProof, NodeRef
from protocol.spec import JobSpec, parse_spec
from protocol.state_commitment import blob_root
from services.agents import operator_moves, player
from services.agents.moves import Move
from tests.conftest import tiny_spec_dict


@dataclass(frozen=True)
class Run:
    spec: JobSpec
    hashes: tuple[bytes, ...]  # state hash at every step 0..N
    blobs: tuple[bytes, ...]
    leaves: tuple[bytes, ...]  # hashes at 0, C, ..., N

    @functools.cached_property
    def tree(self) -> CommitmentTree:
        return CommitmentTree(self.leaves)

    # --- either side of the honest player (services.agents.player) -------------------------
    def node_hash(self, node: NodeRef) -> bytes:
        return self.tree.node_hash(node)

    def hash_at(self, step: int) -> bytes:
        return self.hashes[step]

    def blob_at(self, step: int) -> bytes:
        return self.blobs[step]

    def operator_step(self, dispute: Dispute) -> operator_moves.OwnStep | None:
        return None  # a step-level player

    def leaf(self, index: int) -> bytes:
        return self.leaves[index]

    def leaf_proof(self, index: int) -> InclusionProof:
        return self.tree.inclusion_proof(index)

    def published_data(self, dispute: Dispute) -> PublishDataBody | None:
        return None  # tests publish data themselves

    def trap_reveal(self, dispute: Dispute) -> RevealTrapBody | None:
        return None  # forced errors: tests.forced_error_players.TrapSolver reveals

    def agreed_blob(self, step: int) -> bytes | None:
        return None

    def unseal(self, dispute: Dispute) -> UnsealBody | None:
        return None  # tests.forced_error_players opens seals


def _perturb(state: State) -> State:
    changed = dict(state)
    weight = state["layer0.weight"].clone()
    weight[0, 0] += 1
    changed["layer0.weight"] = weight
    return changed


@functools.cache
def tiny_spec() -> JobSpec:
    return parse_spec(tiny_spec_dict())


@functools.cache
def make_run(cheat_step: int | None = None, cheat_init: bool = False) -> Run:
    """The tiny spec's trajectory; ``cheat_step = s`` perturbs the state produced by step s."""
    spec = tiny_spec()
    state = init(spec)
    if cheat_init:
        state = _perturb(state)
    blobs = [encode_state(state)]
    for i in range(spec.steps):
        state = step(spec, state, i)
        if i == cheat_step:
            state = _perturb(state)
        blobs.append(encode_state(state))
    hashes = tuple(blob_root(b) for b in blobs)
    leaves = hashes[:: spec.checkpoint_interval]
    return Run(spec, hashes, tuple(blobs), leaves)


def honest_move(d: Dispute, solver: player.Claims, challenger: player.Checks) -> Move:
    """The move of the party whose turn it is, played honestly from its side."""
    if d.turn is Party.SOLVER:
        move = player.solver_move(d, solver)
    else:
        move = player.challenger_move(d, challenger)
    if move is None:
        raise AssertionError(f"no move in phase {d.phase}")
    return move


def next_move(
    dispute: Dispute, solver: player.Claims, challenger: player.Checks
) -> tuple[str, str, dict[str, Any]]:
    """(who, kind, body) of the move the current phase expects, played honestly from each run
    (``services.agents.player``, the agents' own player)."""
    move = honest_move(dispute, solver, challenger)
    return dispute.turn.value, move.kind, move.body


def next_body(
    dispute: Dispute, solver: player.Claims, challenger: player.Checks
) -> tuple[str, TxBody]:
    """(who, body) of ``next_move``, the body typed (for the tests that forge a copy of it)."""
    role, kind, body = next_move(dispute, solver, challenger)
    typed: TxBody = parse_body(kind, body)
    return role, typed


def play(
    h: LedgerHarness,
    dispute_id: str,
    solver: Run,
    challenger: Run,
    *,
    names: tuple[str, str] = ("solver", "v1"),
    stop: tuple[Party, Phase] | None = None,
    blocks_per_move: int = 1,
) -> Receipt:
    """Play until the dispute resolves; return the receipt that resolved it.

    ``stop = (party, phase)``: that party never makes its move in that phase; once the deadline
    passes an outsider claims the timeout. ``blocks_per_move = 0`` plays the whole game in the
    current block (so other games on the chain do not time out meanwhile).
    """
    who_is = {"solver": names[0], "challenger": names[1]}
    while True:
        d = h.state.get_dispute(dispute_id)
        assert d.status is DisputeStatus.OPEN
        if stop is not None and (d.turn, d.phase) == stop:
            h.advance_to(d.deadline + 1)
            return h.send("outsider", ClaimTimeoutBody(None, dispute_id))
        h.advance(blocks_per_move)
        role, body = next_body(d, solver, challenger)
        receipt = h.send(who_is[role], body)
        if any(e.kind == "dispute_resolved" for e in receipt.events):
            return receipt

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

from contracts_sim.dispute import bisection_midpoint
from contracts_sim.records import Dispute, DisputeStatus, Party, Phase
from contracts_sim.testing import LedgerHarness, Receipt
from protocol.exact import State, encode_state, init, step
from protocol.merkle import CommitmentTree, NodeRef, children
from protocol.spec import JobSpec, parse_spec
from protocol.state_commitment import blob_root
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


def next_move(dispute: Dispute, solver: Run, challenger: Run) -> tuple[str, str, dict[str, Any]]:
    """(who, kind, body) of the move the current phase expects, played honestly from each run."""
    d = dispute
    base = {"dispute_id": d.dispute_id}
    if d.phase is Phase.REVEAL_CHILDREN:
        assert d.node_lo is not None and d.node_hi is not None
        left, right = children(NodeRef(d.node_lo, d.node_hi))
        return (
            "solver",
            "reveal_children",
            {
                **base,
                "left": solver.tree.node_hash(left).hex(),
                "right": solver.tree.node_hash(right).hex(),
            },
        )
    if d.phase is Phase.CHOOSE_CHILD:
        assert d.node_lo is not None and d.node_hi is not None
        left, _ = children(NodeRef(d.node_lo, d.node_hi))
        side = "left" if d.left_hash != challenger.tree.node_hash(left) else "right"
        return "challenger", "choose_child", {**base, "side": side}
    if d.phase is Phase.REVEAL_LEAF:
        leaf = d.leaf_index
        assert leaf is not None
        body = {**base, "entry": solver.leaves[leaf].hex()}
        if leaf > 0:
            body["pre_entry"] = solver.leaves[leaf - 1].hex()
            body["pre_proof"] = solver.tree.inclusion_proof(leaf - 1).to_json()
        return "solver", "reveal_leaf", body
    assert d.step_lo is not None and d.step_hi is not None
    if d.phase is Phase.POST_MIDPOINT:
        m = bisection_midpoint(d.step_lo, d.step_hi)
        return "solver", "post_midpoint", {**base, "state_hash": solver.hashes[m].hex()}
    if d.phase is Phase.RESPOND_MIDPOINT:
        m = bisection_midpoint(d.step_lo, d.step_hi)
        agree = d.midpoint_hash == challenger.hashes[m]
        return "challenger", "respond_midpoint", {**base, "agree": agree}
    if d.phase is Phase.POST_PRESTATE:
        return "solver", "post_prestate", {**base, "blob": solver.blobs[d.step_lo].hex()}
    raise AssertionError(f"no move in phase {d.phase}")


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
            return h.send("outsider", "claim_timeout", {"dispute_id": dispute_id})
        h.advance(blocks_per_move)
        role, kind, body = next_move(d, solver, challenger)
        receipt = h.send(who_is[role], kind, body)
        if any(e.kind == "dispute_resolved" for e in receipt.events):
            return receipt

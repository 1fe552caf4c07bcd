"""Scripted players of operator-level disputes (``contracts_sim.operator_dispute``).

A ``World`` is what one party believes a job's trajectory is, computed with the exact VM:
every state, and for the disputed step its operator trace (``protocol.exact.trace``). A
cheater is a world in which, at step s, the outputs of some operators are perturbed (one
element each: ``Cheat``) through the trace's tamper hook, so that every later operator, the
post-state and every later step are computed from the perturbed values: the post-state it
commits is the one its trace explains. ``play`` lets a solver world and a challenger world
play a dispute through the ledger, one move a block, from the challenge to the verdict,
optionally stopping one party in one phase (the other claims the timeout). The players
answer every phase honestly from their own world; the rules never see the worlds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from contracts_sim.records import Dispute, DisputeStatus, Party, Phase
from contracts_sim.testing import LedgerHarness, Receipt
from contracts_sim.transactions import (
    ClaimTimeoutBody,
    InputPiece,
    PublishDataBody,
    RevealTrapBody,
    TxBody,
    UnsealBody,
)
from protocol.exact import State, encode_state, init, step
from protocol.exact.state import state_records
from protocol.exact.trace import op_def, program_of
from protocol.exact.trace.run import TraceRun, batch_tensors, execute, tensor_bytes
from protocol.layout import STEP_KEY
from protocol.merkle import InclusionProof, NodeRef
from protocol.spec import JobSpec
from protocol.state_commitment import CHUNK_BYTES, records_root
from protocol.trace import OVERFLOW_ENTRY, OpNode, Program
from services.agents import operator_moves, player
from tests import dispute_agents

VALUES = CHUNK_BYTES // 8


@dataclass(frozen=True)
class Cheat:
    """At step ``step``, add ``delta`` to flat element ``element`` of each op in ``ops``."""

    step: int
    ops: tuple[int, ...]
    element: int = 0
    delta: int = 1
    overflow_op: int | None = None  # also claim this op overflowed (its output None)
    hide: str = ""  # at ``step``, the overflow rule not applied (``_hiding``): "zeros",
    # "reads" or "ignore"

    def tamper(self, node: OpNode, output: torch.Tensor) -> torch.Tensor:
        if node.index not in self.ops:
            return output
        changed = output.clone()
        changed.view(-1)[self.element % changed.numel()] += self.delta
        return changed


@dataclass
class World:
    """One party's belief: the trajectory, and step runs computed on demand."""

    spec: JobSpec
    cheat: Cheat | None = None
    shared: Cheat | None = None  # a perturbation both parties make (an agreed pre-state)
    states: list[State] = field(default_factory=list)
    runs: dict[int, TraceRun] = field(default_factory=dict)
    own: dict[int, operator_moves.OwnStep] = field(default_factory=dict)

    def __post_init__(self) -> None:
        state = init(self.spec)
        self.states = [state]
        for i in range(self.spec.steps):
            if self.cheat_at(i) is not None:
                state = self.trace(i).post_state
            else:
                state = step(self.spec, state, i)
            self.states.append(state)

    def cheat_at(self, i: int) -> Cheat | None:
        for cheat in (self.shared, self.cheat):
            if cheat is not None and cheat.step == i:
                return cheat
        return None

    @property
    def program(self) -> Program:
        return program_of(self.spec)

    def trace(self, i: int) -> TraceRun:
        if i not in self.runs:
            state = self.states[i]
            batch = batch_tensors(self.spec, i, torch.device("cpu"))
            cheat = self.cheat_at(i)
            if cheat is not None and cheat.hide:
                run = _hiding(self.program, state, batch, cheat.hide)
            else:
                run = execute(self.program, state, batch, cheat.tamper if cheat else None)
            if cheat is not None and cheat.overflow_op is not None:
                run = _claim_overflow(run, state, cheat.overflow_op)
            self.runs[i] = run
        return self.runs[i]

    @functools.cached_property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(records_root(state_records(s)) for s in self.states)

    @functools.cached_property
    def as_run(self) -> dispute_agents.Run:
        """The trajectory in the form the step-level players read."""
        leaves = self.hashes[:: self.spec.checkpoint_interval]
        return dispute_agents.Run(self.spec, self.hashes, (), leaves)

    # --- either side of the honest player (services.agents.player) -------------------------
    def node_hash(self, node: NodeRef) -> bytes:
        return self.as_run.node_hash(node)

    def hash_at(self, step: int) -> bytes:
        return self.hashes[step]

    def blob_at(self, step: int) -> bytes:
        return encode_state(self.states[step])

    def operator_step(self, dispute: Dispute) -> operator_moves.OwnStep:
        assert dispute.step_lo is not None
        return own_step(self, dispute.step_lo)

    def leaf(self, index: int) -> bytes:
        return self.as_run.leaf(index)

    def leaf_proof(self, index: int) -> InclusionProof:
        return self.as_run.leaf_proof(index)

    def published_data(self, dispute: Dispute) -> PublishDataBody | None:
        return None

    def trap_reveal(self, dispute: Dispute) -> RevealTrapBody | None:
        return None

    def agreed_blob(self, step: int) -> bytes | None:
        return None

    def unseal(self, dispute: Dispute) -> UnsealBody | None:
        return None

    # --- one step's data -------------------------------------------------------------------

    def tensor(self, a: int, source: str, key: str | int) -> torch.Tensor | None:
        if source == "state":
            return self.states[a][str(key)]
        if source == "batch":
            return batch_tensors(self.spec, a, torch.device("cpu"))[str(key)]
        assert isinstance(key, int)
        return self.trace(a).outputs[key]

    def chunks(self, a: int, source: str, key: str | int) -> list[bytes]:
        t = self.tensor(a, source, key)
        assert t is not None
        data = tensor_bytes(t)
        return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]


def _hiding(program: Program, state: State, batch: dict[str, torch.Tensor], hide: str) -> TraceRun:
    """A party that does not apply the overflow rule at this step: its post-state is
    assembled from the outputs as if nothing overflowed. ``zeros``: each overflowed output
    replaced by zeros and read on; ``reads``: an overflowed output stays one, but the ops
    reading it read zeros instead; ``ignore``: the trace as it is."""
    from protocol.errors import OverflowBoundError
    from protocol.exact.trace.run import entry_of, resolve

    outputs: list[torch.Tensor | None] = []
    for node in program.nodes:
        inputs = [resolve(ref, state, batch, outputs) for ref in node.inputs]
        if hide == "reads":
            inputs = [
                torch.zeros(program.nodes[int(ref.key)].shape, dtype=torch.int64)
                if t is None
                else t
                for ref, t in zip(node.inputs, inputs, strict=True)
            ]
        out: torch.Tensor | None = None
        if all(t is not None for t in inputs):
            try:
                out = op_def(node.kind).run(node, [t for t in inputs if t is not None])
            except OverflowBoundError:
                out = None
        if out is None and hide == "zeros":
            out = torch.zeros(node.shape, dtype=torch.int64)
        outputs.append(out)
    post: State = {STEP_KEY: state[STEP_KEY] + 1}
    for name, ref in program.post_state:
        value = resolve(ref, state, batch, outputs)
        assert value is not None
        post[name] = value
    entries = [entry_of(i, out) for i, out in enumerate(outputs)]
    return TraceRun(post, outputs, entries)


def _claim_overflow(run: TraceRun, state: State, k: int) -> TraceRun:
    """A solver that says op k overflowed (its entry OVERFLOW_ENTRY, the step skipped)."""
    from protocol.exact.program import skipped_step

    entries = list(run.entries)
    outputs = list(run.outputs)
    entries[k], outputs[k] = OVERFLOW_ENTRY, None
    return TraceRun(skipped_step(state), outputs, entries)


# --- the moves: services.agents.operator_moves, from each world's own step ----------------


def own_step(world: World, a: int) -> operator_moves.OwnStep:
    """``world``'s run of step a, in the form the honest moves read."""
    if a not in world.own:
        run = world.trace(a)
        cheat = world.cheat_at(a)
        claims_overflow = run.overflowed and not (cheat and cheat.hide)
        world.own[a] = operator_moves.OwnStep(world.spec, a, world.states[a], run, claims_overflow)
    return world.own[a]


def piece(world: World, a: int, node: OpNode, j: int, chunks: list[int]) -> InputPiece | None:
    return operator_moves.piece(own_step(world, a), node, j, chunks)


def _trace_proof(world: World, a: int, leaf: int) -> InclusionProof:
    return own_step(world, a).trace_proof(leaf)


def next_move(d: Dispute, solver: World, challenger: World) -> tuple[str, str, dict[str, Any]]:
    """(who, kind, body) of the move of any phase, step-level or operator-level: the agents'
    honest player (``services.agents.player``) on each world."""
    return dispute_agents.next_move(d, solver, challenger)


def next_body(d: Dispute, solver: World, challenger: World) -> tuple[str, TxBody]:
    """(who, body) of ``next_move``, the body typed (for the tests that forge a copy of it)."""
    return dispute_agents.next_body(d, solver, challenger)


Tweak = Callable[[str, str, dict[str, Any]], dict[str, Any]]


def play(
    h: LedgerHarness,
    dispute_id: str,
    solver: World,
    challenger: World,
    *,
    stop: tuple[Party, Phase] | None = None,
    names: tuple[str, str] = ("solver", "v1"),
) -> Receipt:
    """Play until the dispute resolves; the receipt that resolved it. ``stop = (party,
    phase)``: that party never moves there; an outsider claims the timeout."""
    who_is = {"solver": names[0], "challenger": names[1]}
    while True:
        d = h.state.get_dispute(dispute_id)
        assert d.status is DisputeStatus.OPEN
        if stop is not None and player.in_operator_game(d) and (d.turn, d.phase) == stop:
            h.advance_to(d.deadline + 1)
            return h.send("outsider", ClaimTimeoutBody(None, dispute_id))
        h.advance(1)
        role, body = next_body(d, solver, challenger)
        receipt = h.send(who_is[role], body)
        if any(e.kind == "dispute_resolved" for e in receipt.events):
            return receipt

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

from contracts_sim.records import Dispute, DisputeStatus, OperatorGame, Party, Phase
from contracts_sim.testing import LedgerHarness, Receipt
from protocol.exact import State, init, step
from protocol.exact.state import state_records
from protocol.exact.trace import op_def, program_of
from protocol.exact.trace.registry import Check, op_checks
from protocol.exact.trace.run import TraceRun, batch_tensors, execute, tensor_bytes
from protocol.layout import STEP_KEY
from protocol.merkle import NodeRef, children, inclusion_path, range_root
from protocol.spec import JobSpec
from protocol.state_commitment import CHUNK_BYTES, chunk_entries, data_root, records_root
from protocol.trace import OVERFLOW_ENTRY, OpNode, Program
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


# --- proofs from a world ---------------------------------------------------------------------


def _names(world: World) -> list[str]:
    return sorted(world.states[0])


def _root_of(world: World, a: int, source: str, key: str | int) -> bytes:
    t = world.tensor(a, source, key)
    assert t is not None
    return data_root(tensor_bytes(t))


def piece(world: World, a: int, node: OpNode, j: int, chunks: list[int]) -> dict[str, Any] | None:
    """Input j of ``node`` at step ``a``: the listed chunks with their paths (and, for an
    operator output, its data root and the proof of its leaf)."""
    ref = node.inputs[j]
    if ref.source == "batch":
        return None
    data = world.chunks(a, ref.source, ref.key)
    entries = chunk_entries(b"".join(data))
    body: dict[str, Any] = {
        "chunks": [
            {
                "index": c,
                "data": data[c].hex(),
                "path": [h.hex() for h in inclusion_path(entries, c)],
            }
            for c in chunks
        ]
    }
    if ref.source == "op":
        assert isinstance(ref.key, int)
        body["data_root"] = _root_of(world, a, "op", ref.key).hex()
        body["entry_proof"] = _trace_proof(world, a, ref.key)
    return body


def _trace_proof(world: World, a: int, leaf: int) -> dict[str, Any]:
    entries = world.trace(a).entries
    return {
        "index": leaf,
        "size": len(entries),
        "path": [h.hex() for h in inclusion_path(entries, leaf)],
    }


def box_chunks(shape: tuple[int, ...], box: Any) -> list[int]:
    from contracts_sim.operator_dispute import box_runs

    runs = box_runs(shape, box)
    return sorted({c for lo, hi in runs for c in range(lo // VALUES, (hi - 1) // VALUES + 1)})


def input_shapes(world: World, node: OpNode) -> list[tuple[int, ...]]:
    from contracts_sim.operator_dispute import input_shapes as shapes_of

    return shapes_of(world.spec, world.program, node)


def overflow_evidence(world: World, a: int, k: int) -> dict[str, Any]:
    """Why op k overflows in ``world``: an overflowed input, or a failing check with the
    largest element of each source input as its witness."""
    node = world.program.nodes[k]
    run = world.trace(a)
    for ref in node.inputs:
        if ref.source == "op" and run.outputs[int(ref.key)] is None:
            return {"leaf": _trace_proof(world, a, int(ref.key))}
    inputs = [world.tensor(a, ref.source, ref.key) for ref in node.inputs]
    assert all(t is not None for t in inputs)
    real = [t for t in inputs if t is not None]
    checks: tuple[Check, ...] = op_checks(node, real)
    for number, check in enumerate(checks):
        if not check.bound(real).fails():
            continue
        witnesses = []
        for j in (j for j in check.sources if j is not None):
            flat = int(real[j].reshape(-1).abs().argmax().item())
            witnesses.append({"element": flat, "piece": piece(world, a, node, j, [flat // VALUES])})
        return {"check": number, "witnesses": witnesses}
    raise AssertionError(f"op {k} does not overflow in this world")


# --- the moves -------------------------------------------------------------------------------


def _tree_hashes(world: World, d: Dispute) -> list[bytes]:
    """The leaves of the tree ``d`` descends, in ``world``."""
    game = d.operator
    assert game is not None and d.step_lo is not None
    run = world.trace(d.step_lo)
    if game.tree == "trace":
        return list(run.entries)
    assert game.op_index is not None
    output = run.outputs[game.op_index]
    if output is None:
        return []
    return list(chunk_entries(tensor_bytes(output)))


def _node_hash(leaves: list[bytes], node: NodeRef) -> bytes | None:
    if node.hi > len(leaves):
        return None
    return range_root(leaves, node.lo, node.hi)


def operator_move(d: Dispute, solver: World, challenger: World) -> tuple[str, str, dict[str, Any]]:
    """(who, kind, body) of the operator-level move the dispute expects."""
    base = {"dispute_id": d.dispute_id}
    a = d.step_lo
    assert a is not None
    game = d.operator
    if d.phase is Phase.COMMIT_TRACE:
        return "solver", "commit_trace", {**base, **commit_trace_body(solver, a)}
    assert game is not None
    k = game.op_index
    if d.phase is Phase.REVEAL_CHILDREN:
        assert d.node_lo is not None and d.node_hi is not None
        left, right = children(NodeRef(d.node_lo, d.node_hi))
        leaves = _tree_hashes(solver, d)
        return (
            "solver",
            "reveal_children",
            {
                **base,
                "left": range_root(leaves, left.lo, left.hi).hex(),
                "right": range_root(leaves, right.lo, right.hi).hex(),
            },
        )
    if d.phase is Phase.CHOOSE_CHILD:
        assert d.node_lo is not None and d.node_hi is not None
        left, right = children(NodeRef(d.node_lo, d.node_hi))
        own = _tree_hashes(challenger, d)
        if d.left_hash != _node_hash(own, left):
            return "challenger", "choose_child", {**base, "side": "left"}
        contradicted = game.tree == "trace" and not game.overflow and OVERFLOW_ENTRY in own
        if d.right_hash != _node_hash(own, right) or not contradicted:
            return "challenger", "choose_child", {**base, "side": "right"}
        # The solver's trace is this one, and it overflows though the solver claims not.
        j = own.index(OVERFLOW_ENTRY)
        return "challenger", "show_overflow", {**base, "leaf": _trace_proof(challenger, a, j)}
    assert k is not None
    node = solver.program.nodes[k]
    if d.phase is Phase.REVEAL_OP:
        out = solver.trace(a).outputs[k]
        if out is None:
            return "solver", "reveal_op", {**base, "overflow": True}
        return (
            "solver",
            "reveal_op",
            {**base, "overflow": False, "data_root": data_root(tensor_bytes(out)).hex()},
        )
    if d.phase is Phase.PROVE_OVERFLOW:
        return "solver", "show_overflow", {**base, **overflow_evidence(solver, a, k)}
    if d.phase is Phase.REVEAL_CHUNK:
        assert game.chunk_index is not None
        return (
            "solver",
            "reveal_chunk",
            {**base, "data": solver.chunks(a, "op", k)[game.chunk_index].hex()},
        )
    if d.phase is Phase.NAME_ELEMENT:
        output = challenger.trace(a).outputs[k]
        if output is None:
            return "challenger", "show_overflow", {**base, **overflow_evidence(challenger, a, k)}
        assert game.chunk_index is not None and game.chunk is not None
        first = game.chunk_index * VALUES
        theirs = torch.frombuffer(bytearray(game.chunk), dtype=torch.int64)
        mine = output.reshape(-1)[first : first + theirs.numel()]
        differ = (theirs != mine).nonzero()
        offset = int(differ[0].item()) if differ.numel() else 0
        return "challenger", "name_element", {**base, "element": first + offset}
    if d.phase is Phase.POST_PIECES:
        return "solver", "post_pieces", {**base, "inputs": pieces_body(solver, a, node, game)}
    raise AssertionError(f"no operator move in phase {d.phase}")


def pieces_body(world: World, a: int, node: OpNode, game: OperatorGame) -> list[Any]:
    from contracts_sim.operator_dispute import unravel

    assert game.element is not None
    shapes = input_shapes(world, node)
    boxes = op_def(node.kind).reads(node, shapes, unravel(game.element, node.shape))
    return [
        None if box is None else piece(world, a, node, j, box_chunks(shapes[j], box))
        for j, box in enumerate(boxes)
    ]


def commit_trace_body(world: World, a: int) -> dict[str, Any]:
    run = world.trace(a)
    cheat = world.cheat_at(a)
    claims_overflow = run.overflowed and not (cheat and cheat.hide)
    names = _names(world)
    pre = [data_root(tensor_bytes(world.states[a][n])).hex() for n in names]
    post = [data_root(tensor_bytes(run.post_state[n])).hex() for n in names]
    body: dict[str, Any] = {"trace_root": run.root.hex(), "pre": pre, "post": post}
    if claims_overflow:
        j = run.entries.index(OVERFLOW_ENTRY)
        return {**body, "overflow": True, "overflow_proof": _trace_proof(world, a, j)}
    sources = dict(world.program.post_state)
    proofs = []
    for name in names:
        ref = sources.get(name)
        proofs.append(
            _trace_proof(world, a, int(ref.key)) if ref is not None and ref.source == "op" else None
        )
    return {**body, "overflow": False, "post_proofs": proofs}


def next_move(d: Dispute, solver: World, challenger: World) -> tuple[str, str, dict[str, Any]]:
    """The move of any phase: the step-level players until the operator game starts."""
    if d.operator is None and d.phase is not Phase.COMMIT_TRACE:
        return dispute_agents.next_move(d, solver.as_run, challenger.as_run)
    return operator_move(d, solver, challenger)


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
        in_operator_game = d.operator is not None or d.phase is Phase.COMMIT_TRACE
        if stop is not None and in_operator_game and (d.turn, d.phase) == stop:
            h.advance_to(d.deadline + 1)
            return h.send("outsider", "claim_timeout", {"dispute_id": dispute_id})
        h.advance(1)
        role, kind, body = next_move(d, solver, challenger)
        receipt = h.send(who_is[role], kind, body)
        if any(e.kind == "dispute_resolved" for e in receipt.events):
            return receipt

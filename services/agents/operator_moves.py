"""The honest moves of the operator-level dispute game (``contracts_sim.operator_dispute``).

Pure functions, one per phase, from the dispute (a ``Dispute`` record; agents decode it from
the node's JSON, ``services.agents.views``) and the party's own run of the disputed step
(``OwnStep``) to the typed body of its move. The honest player's tables
(``services.agents.player``) name them, and the solver and verifier agents and the scripted
test players (``tests.operator_players``) play them: each party answers from its own trace
only; the ledger's rules decide who was right.

    phase            solver                       challenger
    commit_trace     commit_trace                 -
    reveal_children  both children of the node    -
    choose_child     -                            the leftmost child it disagrees with, or
                                                  show_overflow (its trace overflows where
                                                  the solver claims none)
    reveal_op        reveal_op (root or overflow) -
    prove_overflow   show_overflow (evidence)     -
    reveal_chunk     the chunk's bytes            -
    name_element     -                            the first element it disagrees with, or
                                                  show_overflow (op k overflows for it)
    post_pieces      the element's proved reads   -

A solver's own step explains what it committed: run from its claimed pre-state, with each
post-state tensor an operator writes replaced by the claimed one where they differ
(``solver_step``); a challenger's is the step run from the agreed pre-state (``run_step``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from contracts_sim.operator_dispute import VALUES_PER_CHUNK, box_runs, input_shapes, unravel
from contracts_sim.records import Dispute, OperatorGame
from contracts_sim.transactions import (
    ChooseChildBody,
    ChunkPiece,
    CommitTraceBody,
    InputPiece,
    NameElementBody,
    PostPiecesBody,
    RevealChildrenBody,
    RevealChunkBody,
    RevealOpBody,
    ShowOverflowBody,
    Witness,
)
from protocol.exact import State
from protocol.exact.trace import op_def, program_of
from protocol.exact.trace.registry import Check, op_checks
from protocol.exact.trace.run import TraceRun, batch_tensors, execute, tensor_bytes
from protocol.layout import STEP_KEY
from protocol.merkle import InclusionProof, NodeRef, children, inclusion_path, range_root
from protocol.spec import JobSpec
from protocol.state_commitment import CHUNK_BYTES, chunk_entries, data_root
from protocol.trace import OVERFLOW_ENTRY, OpNode, Program
from protocol.types import Hash32
from services.agents.views import decode_record

TraceProver = Callable[[int], InclusionProof]  # leaf -> its inclusion proof in the solver's trace


@dataclass(eq=False)
class OwnStep:
    """One party's run of the disputed step ``step`` of ``spec``: its pre-state, batch and
    trace, and whether it claims the step overflowed."""

    spec: JobSpec
    step: int
    pre: State
    run: TraceRun
    claims_overflow: bool

    @functools.cached_property
    def program(self) -> Program:
        return program_of(self.spec)

    @functools.cached_property
    def batch(self) -> dict[str, Any]:
        return batch_tensors(self.spec, self.step, self.pre[STEP_KEY].device)

    def tensor(self, source: str, key: str | int) -> Any:
        """Input ``(source, key)`` of some op: a state tensor, a batch tensor or an output."""
        if source == "state":
            return self.pre[str(key)]
        if source == "batch":
            return self.batch[str(key)]
        assert isinstance(key, int)
        return self.run.outputs[key]

    @functools.cache  # noqa: B019 (one OwnStep per dispute: its cache lives as long)
    def data(self, source: str, key: str | int) -> bytes:
        t = self.tensor(source, key)
        assert t is not None
        return tensor_bytes(t)

    @functools.cache  # noqa: B019
    def chunk_leaves(self, source: str, key: str | int) -> list[bytes]:
        return list(chunk_entries(self.data(source, key)))

    def chunk(self, source: str, key: str | int, c: int) -> bytes:
        return self.data(source, key)[c * CHUNK_BYTES : (c + 1) * CHUNK_BYTES]

    def trace_proof(self, leaf: int) -> InclusionProof:
        entries = self.run.entries
        return InclusionProof(leaf, len(entries), tuple(inclusion_path(entries, leaf)))


def run_step(spec: JobSpec, pre: State, a: int) -> OwnStep:
    """Step ``a`` run honestly from ``pre`` (the agreed pre-state)."""
    run = execute(program_of(spec), pre, batch_tensors(spec, a, pre[STEP_KEY].device))
    return OwnStep(spec, a, pre, run, run.overflowed)


def solver_step(spec: JobSpec, pre: State, post: State, a: int) -> OwnStep:
    """The solver's step ``a``: run from its pre-state, each post-state tensor an operator
    writes replaced by the one it claims where they differ, so its trace explains the
    post-state it committed (an honest solver's trace is the honest one)."""
    own = run_step(spec, pre, a)
    if own.run.overflowed or _same_state(own.run.post_state, post):
        return own
    writes = {int(ref.key): name for name, ref in own.program.post_state if ref.source == "op"}

    def claimed(node: OpNode, output: Any) -> Any:
        name = writes.get(node.index)
        return output if name is None else post[name]

    run = execute(own.program, pre, own.batch, claimed)
    return OwnStep(spec, a, pre, run, run.overflowed)


def _same_state(x: State, y: State) -> bool:
    return x.keys() == y.keys() and all(tensor_bytes(x[k]) == tensor_bytes(y[k]) for k in x)


# --- the moves ---------------------------------------------------------------------------------


def _game(d: Dispute) -> OperatorGame:
    assert d.operator is not None, f"phase {d.phase} without an operator game"
    return d.operator


def _op(d: Dispute) -> tuple[OperatorGame, int]:
    """The game, and op k: the operator the trace descent reached."""
    game = _game(d)
    assert game.op_index is not None
    return game, game.op_index


def _halves(d: Dispute, own: OwnStep) -> tuple[NodeRef, NodeRef, list[bytes]]:
    """The node under descent's two children, and the leaves of ``own``'s tree it descends."""
    assert d.node_lo is not None and d.node_hi is not None
    left, right = children(NodeRef(d.node_lo, d.node_hi))
    return left, right, tree_leaves(_game(d), own)


# The solver's moves.


def commit_trace(d: Dispute, own: OwnStep) -> CommitTraceBody:
    return commit_trace_body(d.dispute_id, own)


def reveal_children(d: Dispute, own: OwnStep) -> RevealChildrenBody:
    left, right, leaves = _halves(d, own)
    return RevealChildrenBody(
        d.dispute_id,
        Hash32(range_root(leaves, left.lo, left.hi)),
        Hash32(range_root(leaves, right.lo, right.hi)),
    )


def reveal_op(d: Dispute, own: OwnStep) -> RevealOpBody:
    _, k = _op(d)
    if own.run.outputs[k] is None:
        return RevealOpBody(d.dispute_id, True, None)
    return RevealOpBody(d.dispute_id, False, Hash32(data_root(own.data("op", k))))


def prove_overflow(d: Dispute, own: OwnStep) -> ShowOverflowBody:
    return overflow_evidence(d.dispute_id, own, _op(d)[1])


def reveal_chunk(d: Dispute, own: OwnStep) -> RevealChunkBody:
    game, k = _op(d)
    assert game.chunk_index is not None
    return RevealChunkBody(d.dispute_id, own.chunk("op", k, game.chunk_index))


def post_pieces(d: Dispute, own: OwnStep) -> PostPiecesBody:
    game, k = _op(d)
    return PostPiecesBody(d.dispute_id, pieces_body(own, own.program.nodes[k], game))


# The challenger's moves.


def choose_child(d: Dispute, own: OwnStep) -> ChooseChildBody | ShowOverflowBody:
    game = _game(d)
    left, right, leaves = _halves(d, own)
    if d.left_hash != _node_hash(leaves, left):
        return ChooseChildBody(d.dispute_id, "left")
    contradicted = game.tree == "trace" and not game.overflow and OVERFLOW_ENTRY in leaves
    if d.right_hash != _node_hash(leaves, right) or not contradicted:
        return ChooseChildBody(d.dispute_id, "right")
    # The solver's trace is this one, and it overflows though the solver claims not.
    leaf = own.trace_proof(leaves.index(OVERFLOW_ENTRY))
    return ShowOverflowBody(d.dispute_id, leaf, None, ())


def name_element(d: Dispute, own: OwnStep) -> NameElementBody | ShowOverflowBody:
    game, k = _op(d)
    if own.run.outputs[k] is None:
        prove = functools.partial(solver_trace_proof, d, own)
        return overflow_evidence(d.dispute_id, own, k, prove)
    assert game.chunk_index is not None and game.chunk is not None
    element = disputed_element(own, k, game.chunk_index, game.chunk)
    return NameElementBody(d.dispute_id, element)


def tree_leaves(game: OperatorGame, own: OwnStep) -> list[bytes]:
    """The leaves of the tree the dispute descends, in ``own``: the trace's entries, or the
    chunk entries of op k's output."""
    if game.tree == "trace":
        return list(own.run.entries)
    assert game.op_index is not None
    if own.run.outputs[game.op_index] is None:
        return []
    return own.chunk_leaves("op", game.op_index)


def _node_hash(leaves: list[bytes], node: NodeRef) -> bytes | None:
    if node.hi > len(leaves):
        return None
    return range_root(leaves, node.lo, node.hi)


def disputed_element(own: OwnStep, k: int, c: int, chunk: bytes) -> int:
    """The first element of the solver's chunk ``c`` of op k's output that differs from
    ``own``'s (its first element when none does: the referee then upholds the solver)."""
    mine = own.chunk("op", k, c)
    first = c * VALUES_PER_CHUNK
    for offset in range(0, len(chunk), 8):
        if chunk[offset : offset + 8] != mine[offset : offset + 8]:
            return first + offset // 8
    return first


def commit_trace_body(dispute_id: str, own: OwnStep) -> CommitTraceBody:
    """The trace root, the pre- and post-state's data roots, and the evidence tying them."""
    run = own.run
    names = sorted(own.pre)
    pre = tuple(Hash32(data_root(own.data("state", n))) for n in names)
    post = tuple(Hash32(data_root(tensor_bytes(run.post_state[n]))) for n in names)
    root = Hash32(run.root)
    if own.claims_overflow:
        j = run.entries.index(OVERFLOW_ENTRY)
        return CommitTraceBody(dispute_id, root, True, pre, post, (), own.trace_proof(j))
    sources = dict(own.program.post_state)
    proofs = []
    for name in names:
        ref = sources.get(name)
        writes = ref is not None and ref.source == "op"
        proofs.append(own.trace_proof(int(ref.key)) if ref is not None and writes else None)
    return CommitTraceBody(dispute_id, root, False, pre, post, tuple(proofs), None)


def piece(
    own: OwnStep,
    node: OpNode,
    j: int,
    chunks: Sequence[int],
    prove: TraceProver | None = None,
) -> InputPiece | None:
    """Input j of ``node``: the listed chunks with their paths (and, for an operator output,
    its data root and the proof of its leaf, by ``prove``: the party's own trace unless
    given); None for the batch (the referee computes it)."""
    ref = node.inputs[j]
    if ref.source == "batch":
        return None
    leaves = own.chunk_leaves(ref.source, ref.key)
    pieces = tuple(
        ChunkPiece(c, own.chunk(ref.source, ref.key, c), tuple(inclusion_path(leaves, c)))
        for c in chunks
    )
    if ref.source != "op":
        return InputPiece(None, None, pieces)
    assert isinstance(ref.key, int)
    root = Hash32(data_root(own.data("op", ref.key)))
    return InputPiece(root, (prove or own.trace_proof)(ref.key), pieces)


def box_chunks(shape: tuple[int, ...], box: Any) -> list[int]:
    """The chunks covering ``box`` of a tensor of ``shape``, in order."""
    runs = box_runs(shape, box)
    return sorted(
        {
            c
            for lo, hi in runs
            for c in range(lo // VALUES_PER_CHUNK, (hi - 1) // VALUES_PER_CHUNK + 1)
        }
    )


def pieces_body(own: OwnStep, node: OpNode, game: OperatorGame) -> tuple[InputPiece | None, ...]:
    """What the named element of op k reads: each input's covering chunks, proved."""
    assert game.element is not None
    shapes = input_shapes(own.spec, own.program, node)
    boxes = op_def(node.kind).reads(node, shapes, unravel(game.element, node.shape))
    return tuple(
        None if box is None else piece(own, node, j, box_chunks(shapes[j], box))
        for j, box in enumerate(boxes)
    )


def overflow_evidence(
    dispute_id: str, own: OwnStep, k: int, prove: TraceProver | None = None
) -> ShowOverflowBody:
    """Why op k overflows in ``own``: an overflowed input (its leaf), or a failing check with
    the largest element of each source input as its witness. Leaves j < k are proved by
    ``prove``: the party's own trace (the solver's) unless given (the challenger gives
    ``solver_trace_proof``)."""
    prove = prove or own.trace_proof
    node = own.program.nodes[k]
    for ref in node.inputs:
        if ref.source == "op" and own.run.outputs[int(ref.key)] is None:
            return ShowOverflowBody(dispute_id, prove(int(ref.key)), None, ())
    inputs = [own.tensor(ref.source, ref.key) for ref in node.inputs]
    checks: tuple[Check, ...] = op_checks(node, inputs)
    for number, check in enumerate(checks):
        if not check.bound(inputs).fails():
            continue
        witnesses = []
        for j in (j for j in check.sources if j is not None):
            flat = int(inputs[j].reshape(-1).abs().argmax().item())
            evidence = piece(own, node, j, [flat // VALUES_PER_CHUNK], prove)
            witnesses.append(Witness(flat, evidence))
        return ShowOverflowBody(dispute_id, None, number, tuple(witnesses))
    raise AssertionError(f"op {k} does not overflow in this run")


def solver_trace_proof(d: Dispute, own: OwnStep, leaf: int) -> InclusionProof:
    """The proof that ``leaf`` (< k, the op the trace descent reached) is that leaf of the
    *solver's* trace, built by the challenger, whose own trace differs at leaf k.

    A path built from the challenger's own trace is refused: at the level where the leaf's
    path leaves the descent's, the sibling is the subtree holding leaf k, and above it the
    siblings cover leaves past k. Every such hash is on chain: the descent passes through
    each of those levels, and there the solver revealed both children (``reveal_children``
    moves, recorded in ``d.moves``). The siblings below the split lie in a subtree the
    descent went right of, so the two traces agree on it (the challenger takes the left
    child whenever it differs): the challenger's own hashes are the solver's there.

    The ledger could instead keep the descent's hashes and accept paths relative to them;
    that would add state and a second proof rule to the game, where this uses the one
    inclusion check the ledger has and data every client can read.
    """
    revealed = _revealed_hashes(d)
    entries = own.run.entries
    size = len(entries)

    def node_hash(node: NodeRef) -> bytes:
        known = revealed.get((node.lo, node.hi))
        return known if known is not None else range_root(entries, node.lo, node.hi)

    path: list[bytes] = []
    node = NodeRef(0, size)
    while node.hi - node.lo > 1:
        left, right = children(node)
        sibling, node = (right, left) if leaf < left.hi else (left, right)
        path.append(node_hash(sibling))
    return InclusionProof(leaf, size, tuple(reversed(path)))


def _revealed_hashes(d: Dispute) -> dict[tuple[int, int], bytes]:
    """(lo, hi) -> the hash of that node of the solver's trace, as the solver revealed it in
    the trace descent (from ``commit_trace`` to ``reveal_op``)."""
    known: dict[tuple[int, int], bytes] = {}
    node: NodeRef | None = None
    for move in d.moves:
        if move.kind == CommitTraceBody.kind:
            node = NodeRef(0, _game(d).trace_size)
        elif node is None:
            continue
        elif move.kind == RevealChildrenBody.kind:
            revealed = decode_record(_Revealed, move.data, "reveal_children move")
            left, right = children(node)
            known[(left.lo, left.hi)] = revealed.left
            known[(right.lo, right.hi)] = revealed.right
        elif move.kind == ChooseChildBody.kind:
            chosen = decode_record(_Chosen, move.data, "choose_child move")
            node = NodeRef(chosen.lo, chosen.hi)
        elif move.kind == RevealOpBody.kind:
            break
    return known


@dataclass(frozen=True)
class _Revealed:
    """What the ledger records of a ``reveal_children`` move."""

    left: bytes
    right: bytes


@dataclass(frozen=True)
class _Chosen:
    """What the ledger records of a ``choose_child`` move: the child descended into."""

    lo: int
    hi: int

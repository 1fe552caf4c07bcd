"""Operator-level disputes on the ledger (``contracts_sim.operator_dispute``), played by
scripted players (``tests.operator_players``) on real exact-VM traces.

A cheater perturbs one element of op k's output at step s (everything after computed from
it); the game must end with the solver slashed, ``located_step == s`` and ``located_op ==
k``. A false challenger loses its bond; every new phase times out against the party to move;
forged evidence is refused and changes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import pytest

from contracts_sim.exceptions import InvalidProofError, MalformedBodyError
from contracts_sim.params import TEST, Params
from contracts_sim.records import DisputeStatus, JobStatus, Party, Phase, Resolution
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    ChallengeBody,
    ClaimTimeoutBody,
    CommitTraceBody,
    InputPiece,
    PostPiecesBody,
    ShowOverflowBody,
    Witness,
)
from protocol.merkle import InclusionProof
from protocol.spec import JobSpec, parse_spec
from protocol.types import Hash32
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import committed_job, funded_harness, job
from tests.operator_players import Cheat, World, next_body, play

OPERATOR = replace(TEST, operator_disputes=True)


@functools.cache
def mlp_spec() -> JobSpec:
    return parse_spec(tiny_spec_dict(steps=8))


@functools.cache
def transformer_spec() -> JobSpec:
    from tests.protocol.test_trace_transformer import transformer_spec as build

    return build("adamw", steps=8, checkpoint_interval=4)


@functools.cache
def world(spec: JobSpec, cheat: Cheat | None = None, shared: Cheat | None = None) -> World:
    return World(spec, cheat, shared)


def op_index(spec: JobSpec, label: str) -> int:
    from protocol.exact.trace import program_of

    (k,) = [n.index for n in program_of(spec).nodes if n.label == label]
    return k


def _open(
    spec: JobSpec, solver: World, params: Params = OPERATOR
) -> tuple[LedgerHarness, str, str]:
    h = funded_harness(params=params)
    job_id, _ = committed_job(h, leaves=list(solver.as_run.leaves), spec=spec.to_dict())
    h.advance(1)
    receipt = h.send("v1", ChallengeBody(job_id, None))
    return h, job_id, str(receipt.event("challenged").data["dispute_id"])


def _until(
    h: LedgerHarness, dispute_id: str, phase: Phase, solver: World, challenger: World
) -> None:
    """Play both sides until the dispute waits in ``phase``."""
    names = {"solver": "solver", "challenger": "v1"}
    while (d := h.state.get_dispute(dispute_id)).phase is not phase:
        assert d.status is DisputeStatus.OPEN
        h.advance(1)
        role, body = next_body(d, solver, challenger)
        h.send(names[role], body)


def _slashed_at(
    spec: JobSpec, cheat: Cheat, k: int, shared: Cheat | None = None
) -> tuple[LedgerHarness, str, dict[str, Any]]:
    solver, honest = world(spec, cheat, shared), world(spec, None, shared)
    assert solver.hashes[cheat.step + 1] != honest.hashes[cheat.step + 1]  # a real cheat
    h, job_id, dispute_id = _open(spec, solver)
    receipt = play(h, dispute_id, solver, honest)
    resolved = receipt.event("dispute_resolved").data
    d = h.state.get_dispute(dispute_id)
    assert resolved["loser_role"] == Party.SOLVER, resolved["reason"]
    assert d.status is DisputeStatus.CHALLENGER_WON
    assert job(h, job_id).status is JobStatus.SLASHED
    assert resolved["located_step"] == d.located_step == cheat.step
    assert d.operator is not None and resolved["located_op"] == d.operator.located_op == k
    assert resolved["located_label"] == spec_program_label(spec, k)
    decided = {Resolution.OPERATOR_CHECK, Resolution.OVERFLOW_EVIDENCE}
    assert resolved["resolution"] == d.resolution and d.resolution in decided
    return h, dispute_id, resolved


def spec_program_label(spec: JobSpec, k: int) -> str:
    from protocol.exact.trace import program_of

    return program_of(spec).nodes[k].label


# --- the cheater is located at its operator ---------------------------------------------------


@pytest.mark.parametrize(
    "k", [9, 13, 16, 24, 31], ids=["forward", "loss_grad", "weight_grad", "momentum", "last"]
)
def test_mlp_cheat_is_located_at_its_operator(k: int) -> None:
    _slashed_at(mlp_spec(), Cheat(step=5, ops=(k,), element=3), k)


def test_first_operator_leaf_0_of_the_trace() -> None:
    """Op 0 (a range check, whose output nothing reads) and the last op both differ: the
    descent takes only left children down to leaf 0 of the trace."""
    spec = mlp_spec()
    last = op_index(spec, "layer1.bias.update")
    h, dispute_id, _ = _slashed_at(spec, Cheat(step=2, ops=(0, last)), 0)
    sides = [
        m.data["side"] for m in h.state.get_dispute(dispute_id).moves if m.kind == "choose_child"
    ]
    assert sides[-5:] == ["left"] * 5  # log2(32 operators)


def test_cheat_at_step_0_is_located() -> None:
    """The very first step: the agreed pre-state is the initial state (leaf 0)."""
    spec = mlp_spec()
    k = op_index(spec, "layer0.relu")
    _slashed_at(spec, Cheat(step=0, ops=(k,), element=7, delta=-3), k)


@pytest.mark.parametrize(
    "label",
    [
        "block0.attn.scores",
        "block0.attn.softmax",
        "block1.attn.values",
        "block0.norm1.gain.normalized",
        "norm.gain.input_grad",
        "head.weight.grad",
        "adam_m.head.weight.update",
        "adam_v.block0.attn.qkv.weight.update",
        "block1.mlp.in.weight.update",
    ],
)
def test_transformer_cheat_is_located_at_its_operator(label: str) -> None:
    spec = transformer_spec()
    k = op_index(spec, label)
    # Element 58 of a (4, 2, 8, 8) attention tensor is row 7 (the last query: no position
    # of it is masked); of any other output, some element of an early row.
    _slashed_at(spec, Cheat(step=5, ops=(k,), element=58, delta=1 << 14), k)


def test_false_challenger_at_operator_level_loses_its_bond() -> None:
    spec = mlp_spec()
    k = op_index(spec, "layer1.weight.grad")
    mistaken, honest = world(spec, Cheat(step=6, ops=(k,), element=2)), world(spec)
    h, job_id, dispute_id = _open(spec, honest)
    v1 = h.account("v1").balance
    receipt = play(h, dispute_id, honest, mistaken)
    resolved = receipt.event("dispute_resolved").data
    assert resolved["loser_role"] == Party.CHALLENGER
    assert receipt.event("bond_forfeited").data["amount"] == TEST.challenge_bond
    assert resolved["located_step"] == 6 and resolved["located_op"] == k
    assert "recomputed to the solver's value" in resolved["reason"]
    assert h.account("v1").balance == v1  # the bond is gone
    assert job(h, job_id).status is JobStatus.COMMITTED


# --- overflows ------------------------------------------------------------------------------

BIG = 1 << 41  # past the state's range (2^40): the next step's range check fails


def _overflowing(spec: JobSpec) -> Cheat:
    """Both parties' layer1.bias leaves the range after step 4 (an agreed pre-state of step
    5 whose range check overflows; nothing else of the step does)."""
    return Cheat(step=4, ops=(op_index(spec, "layer1.bias.update"),), delta=BIG)


def test_a_solver_claiming_a_false_overflow_loses() -> None:
    spec = mlp_spec()
    k = op_index(spec, "layer1.forward")
    solver, honest = world(spec, Cheat(step=5, ops=(), overflow_op=k)), world(spec)
    h, _, dispute_id = _open(spec, solver)
    _until(h, dispute_id, Phase.PROVE_OVERFLOW, solver, honest)
    # The real elements of its inputs do not make the check fail: refused, nothing changes.
    from tests.operator_players import piece

    node = solver.program.nodes[k]
    witnesses = (
        Witness(0, piece(solver, 5, node, 0, [0])),
        Witness(0, piece(solver, 5, node, 1, [0])),
    )
    fake = ShowOverflowBody(dispute_id, None, 0, witnesses)
    before = h.state.get_dispute(dispute_id)
    h.expect_error("solver", fake, error=MalformedBodyError)
    assert h.state.get_dispute(dispute_id) == before
    d = h.state.get_dispute(dispute_id)
    h.advance_to(d.deadline + 1)
    receipt = h.send("outsider", ClaimTimeoutBody(None, dispute_id))
    assert receipt.event("dispute_resolved").data["loser_role"] == Party.SOLVER


@pytest.mark.parametrize("hide", ["zeros", "ignore"])
def test_a_solver_hiding_an_overflow_loses(hide: str) -> None:
    """``zeros``: the overflowed range check's output replaced, so the trace differs at it
    and the challenger shows the check fails (a state element past 2^40). ``ignore``: the
    trace is the honest one, overflow and all, but the post-state is not the skipped one;
    the challenger shows the overflowed leaf during the trace descent."""
    spec = mlp_spec()
    shared = _overflowing(spec)
    k = op_index(spec, "range.layer1.bias")
    h, dispute_id, resolved = _slashed_at(spec, Cheat(step=5, ops=(), hide=hide), k, shared)
    kinds = [m.kind for m in h.state.get_dispute(dispute_id).moves]
    assert kinds[-1] == "show_overflow"
    # zeros: shown at name_element, after the chunk; ignore: during the trace descent.
    assert ("reveal_chunk" in kinds) is ("reveal_op" in kinds) is (hide == "zeros")
    assert "overflow" in resolved["reason"]
    assert resolved["resolution"] == Resolution.OVERFLOW_EVIDENCE


def test_an_honest_overflow_claim_wins() -> None:
    """The step really overflows; a mistaken challenger (who ignores the rule) loses: the
    solver proves its overflowed op with a witness element."""
    spec = mlp_spec()
    shared = _overflowing(spec)
    honest = world(spec, None, shared)
    mistaken = world(spec, Cheat(step=5, ops=(), hide="zeros"), shared)
    h, _, dispute_id = _open(spec, honest)
    receipt = play(h, dispute_id, honest, mistaken)
    resolved = receipt.event("dispute_resolved").data
    assert resolved["loser_role"] == Party.CHALLENGER
    assert resolved["resolution"] == Resolution.OVERFLOW_EVIDENCE
    assert resolved["located_op"] == op_index(spec, "range.layer1.bias")
    kinds = [m.kind for m in h.state.get_dispute(dispute_id).moves]
    assert kinds[-2:] == ["reveal_op", "show_overflow"]


def test_an_overflow_read_from_an_earlier_op_is_proved_by_its_leaf() -> None:
    """Layer 0's forward overflows (its weight near 2^39: |x|·|w|·K past 2^53), so the ReLU
    that reads it is an overflow too. A mistaken challenger that agrees with the first but
    lets the ReLU read zeros disputes the ReLU: the solver proves it by the leaf of the
    overflowed input."""
    spec = mlp_spec()
    shared = Cheat(step=4, ops=(op_index(spec, "layer0.weight.update"),), delta=1 << 39)
    honest = world(spec, None, shared)
    mistaken = world(spec, Cheat(step=5, ops=(), hide="reads"), shared)
    relu = op_index(spec, "layer0.relu")
    assert honest.trace(5).outputs[relu - 1] is None is mistaken.trace(5).outputs[relu - 1]
    h, _, dispute_id = _open(spec, honest)
    receipt = play(h, dispute_id, honest, mistaken)
    resolved = receipt.event("dispute_resolved").data
    assert resolved["loser_role"] == Party.CHALLENGER
    assert resolved["located_op"] == relu and "reads op" in resolved["reason"]
    assert h.state.get_dispute(dispute_id).moves[-1].data["leaf"] == relu - 1


def test_show_overflow_out_of_place_is_refused() -> None:
    """During the trace descent only against a solver claiming no overflow, with a leaf;
    at op k only a leaf that is one of its inputs."""
    spec = mlp_spec()
    solver, honest = world(spec, SOLVER_CHEATS), world(spec)
    h, _, dispute_id = _open(spec, solver)
    _until(h, dispute_id, Phase.CHOOSE_CHILD, solver, honest)  # the trajectory's descent
    body = ShowOverflowBody(dispute_id, InclusionProof(0, 32, ()), None, ())
    h.expect_error("v1", body)
    _until(h, dispute_id, Phase.REVEAL_CHILDREN, solver, honest)
    while h.state.get_dispute(dispute_id).operator is None:
        h.advance(1)
        role, move = next_body(h.state.get_dispute(dispute_id), solver, honest)
        h.send({"solver": "solver", "challenger": "v1"}[role], move)
    _until(h, dispute_id, Phase.CHOOSE_CHILD, solver, honest)  # the trace's descent
    from tests.operator_players import _trace_proof

    not_overflow = ShowOverflowBody(dispute_id, _trace_proof(solver, 5, 3), None, ())
    h.expect_error("v1", not_overflow, error=InvalidProofError)
    _until(h, dispute_id, Phase.NAME_ELEMENT, solver, honest)
    h.expect_error("v1", not_overflow, error=MalformedBodyError)  # not an input
    checks = ShowOverflowBody(dispute_id, None, 0, ())
    h.expect_error("v1", checks, error=MalformedBodyError)  # one per factor


# --- timeouts ---------------------------------------------------------------------------------

SOLVER_CHEATS = Cheat(step=5, ops=(9,), element=3)


@pytest.mark.parametrize(
    ("party", "phase"),
    [
        (Party.SOLVER, Phase.COMMIT_TRACE),
        (Party.SOLVER, Phase.REVEAL_CHILDREN),
        (Party.CHALLENGER, Phase.CHOOSE_CHILD),
        (Party.SOLVER, Phase.REVEAL_OP),
        (Party.SOLVER, Phase.REVEAL_CHUNK),
        (Party.CHALLENGER, Phase.NAME_ELEMENT),
        (Party.SOLVER, Phase.POST_PIECES),
    ],
)
def test_the_party_that_stops_answering_loses(party: Party, phase: Phase) -> None:
    spec = mlp_spec()
    solver, honest = world(spec, SOLVER_CHEATS), world(spec)
    h, _, dispute_id = _open(spec, solver)
    receipt = play(h, dispute_id, solver, honest, stop=(party, phase))
    resolved = receipt.event("dispute_resolved").data
    assert resolved["loser_role"] == party
    assert phase.value in resolved["reason"]
    d = h.state.get_dispute(dispute_id)
    assert d.moves[-1].kind == "claim_timeout" and d.moves[-1].data["phase"] == phase


# --- forged evidence is refused -----------------------------------------------------------------


def _at_post_pieces(
    spec: JobSpec, cheat: Cheat
) -> tuple[LedgerHarness, str, World, PostPiecesBody]:
    solver, honest = world(spec, cheat), world(spec)
    h, _, dispute_id = _open(spec, solver)
    _until(h, dispute_id, Phase.POST_PIECES, solver, honest)
    d = h.state.get_dispute(dispute_id)
    _, body = next_body(d, solver, honest)
    assert isinstance(body, PostPiecesBody)
    return h, dispute_id, solver, body


def wide_spec() -> JobSpec:
    """An MLP whose first weight spans two chunks (64 x 16 values)."""
    model = {"family": "mlp", "input_dim": 16, "hidden": [64], "classes": 4}
    return parse_spec(tiny_spec_dict(steps=8, model=model))


def _with_input(body: PostPiecesBody, j: int, piece: InputPiece) -> PostPiecesBody:
    return replace(body, inputs=(*body.inputs[:j], piece, *body.inputs[j + 1 :]))


def _forgeries(body: PostPiecesBody, j: int) -> list[PostPiecesBody]:
    """Forged copies of ``body``: input j's first chunk with one byte changed; with the
    path of another chunk; under another chunk's index."""
    piece = body.inputs[j]
    assert piece is not None
    chunk = piece.chunks[0]
    data = bytearray(chunk.data)
    data[5] ^= 1
    forged = [
        replace(chunk, data=bytes(data)),
        replace(chunk, path=(bytes(32), *chunk.path[1:])),
        replace(chunk, index=chunk.index ^ 1),
    ]
    return [_with_input(body, j, replace(piece, chunks=(bad, *piece.chunks[1:]))) for bad in forged]


def test_forged_pieces_are_refused_and_change_nothing() -> None:
    spec = wide_spec()
    k = op_index(spec, "layer1.forward")  # reads op 10 (relu), op 11 (W1.T) and a bias
    h, dispute_id, _, body = _at_post_pieces(spec, Cheat(step=5, ops=(k,), element=2))
    before = h.state.get_dispute(dispute_id)
    for j in (0, 1, 2):
        for forged in _forgeries(body, j):
            h.expect_error("solver", forged)
            assert h.state.get_dispute(dispute_id) == before
    # Another operator's data root for an operator input:
    first = body.inputs[0]
    assert first is not None
    other = replace(first, data_root=Hash32(bytes(32)))
    h.expect_error("solver", _with_input(body, 0, other))
    receipt = h.send("solver", body)
    assert receipt.event("dispute_resolved").data["loser_role"] == Party.SOLVER


def test_forged_state_chunk_of_a_two_chunk_tensor_is_refused() -> None:
    spec = wide_spec()
    k = op_index(spec, "layer0.weight.T")  # reads layer0.weight (64 x 16: two chunks)
    h, dispute_id, _, body = _at_post_pieces(spec, Cheat(step=5, ops=(k,), element=700))
    before = h.state.get_dispute(dispute_id)
    first = body.inputs[0]
    assert first is not None and first.chunks[0].index in (0, 1)
    for forged in _forgeries(body, 0):
        h.expect_error("solver", forged)
        assert h.state.get_dispute(dispute_id) == before
    receipt = h.send("solver", body)
    assert receipt.event("dispute_resolved").data["loser_role"] == Party.SOLVER


def test_commit_trace_that_does_not_explain_the_states_is_refused() -> None:
    spec = mlp_spec()
    solver, honest = world(spec, SOLVER_CHEATS), world(spec)
    h, _, dispute_id = _open(spec, solver)
    _until(h, dispute_id, Phase.COMMIT_TRACE, solver, honest)
    d = h.state.get_dispute(dispute_id)
    _, body = next_body(d, solver, honest)
    _, honest_body = next_body(d, honest, honest)
    assert isinstance(body, CommitTraceBody) and isinstance(honest_body, CommitTraceBody)
    wrong_pre = replace(body, pre=(Hash32(bytes(32)), *body.pre[1:]))
    proofs = list(body.post_proofs)
    first = next(i for i, p in enumerate(proofs) if p is not None)
    proof = proofs[first]
    assert proof is not None
    proofs[first] = replace(proof, path=tuple(reversed(proof.path)))
    wrong_proof = replace(body, post_proofs=tuple(proofs))
    honest_post = replace(body, post=honest_body.post)
    for forged in (wrong_pre, wrong_proof, honest_post, replace(body, pre=body.pre[:-1])):
        h.expect_error("solver", forged)
        assert h.state.get_dispute(dispute_id) == d
    h.send("solver", body)
    assert h.state.get_dispute(dispute_id).phase is Phase.REVEAL_CHILDREN


# --- the flag ---------------------------------------------------------------------------------


def test_operator_disputes_refuse_forced_errors() -> None:
    with pytest.raises(ValueError, match="forced_error_bps"):
        replace(TEST, operator_disputes=True, forced_error_bps=1_000)


def test_without_the_flag_one_step_posts_the_prestate() -> None:
    spec = mlp_spec()
    solver, honest = world(spec, SOLVER_CHEATS), world(spec)
    h, _, dispute_id = _open(spec, solver, TEST)
    names = {"solver": "solver", "challenger": "v1"}
    while (d := h.state.get_dispute(dispute_id)).phase is not Phase.POST_PRESTATE:
        assert d.phase is not Phase.COMMIT_TRACE
        h.advance(1)
        role, body = next_body(d, solver, honest)
        h.send(names[role], body)
    assert d.operator is None


def test_rounds_are_logarithmic() -> None:
    """Moves of the whole game: ⌈log2 leaves⌉ + ⌈log2 C⌉ + ⌈log2 operators⌉ +
    ⌈log2 output chunks⌉ + a constant (challenge, reveal_leaf, commit_trace, reveal_op,
    reveal_chunk, name_element, post_pieces), each descent level two moves."""
    import math

    spec = wide_spec()
    k = op_index(spec, "layer0.weight.grad")  # (64, 16): two chunks
    h, dispute_id, _ = _slashed_at(spec, Cheat(step=5, ops=(k,), element=900), k)
    moves = [m.kind for m in h.state.get_dispute(dispute_id).moves]
    leaves = spec.steps // spec.checkpoint_interval + 1
    ops = len(world(spec).program.nodes)
    levels = [math.ceil(math.log2(n)) for n in (leaves, spec.checkpoint_interval, ops, 2)]
    # The challenger's decisions: the challenge, one per level of each descent and of the
    # bisection, and the element it names (issue 10's bound).
    decisions = [m for m in h.state.get_dispute(dispute_id).moves if m.party is Party.CHALLENGER]
    assert len(decisions) <= sum(levels) + 2
    assert len(moves) <= 2 * sum(levels) + 7


def test_a_row_over_several_chunks_is_posted_whole() -> None:
    """Hidden width 600: layer 1's forward reads a 600-value row of the ReLU's output and of
    the transposed weight, each over two chunks; every one of them is posted and proved."""
    model = {"family": "mlp", "input_dim": 16, "hidden": [600], "classes": 4}
    spec = parse_spec(tiny_spec_dict(steps=8, model=model))
    k = op_index(spec, "layer1.forward")
    h, dispute_id, _ = _slashed_at(spec, Cheat(step=6, ops=(k,), element=30, delta=1 << 14), k)
    posted = [m for m in h.state.get_dispute(dispute_id).moves if m.kind == "post_pieces"]
    assert posted[0].data["bytes"] > 2 * 4096  # rows of 4800 bytes, each over two chunks


@functools.cache
def cnn_spec() -> JobSpec:
    from tests.protocol.test_cnn import MAX2
    from tests.protocol.test_cnn import cnn_spec as build

    return build([MAX2], [12], steps=8, checkpoint_interval=4)


@pytest.mark.parametrize(
    ("label", "element"),
    [("conv0.im2col", 100), ("pool0", 9), ("conv0.weight.grad", 4), ("pool0.grad", 130)],
)
def test_cnn_cheat_is_located_at_its_operator(label: str, element: int) -> None:
    """Windows, pools and a weight gradient whose rows (1024 values) span two chunks."""
    spec = cnn_spec()
    k = op_index(spec, label)
    _slashed_at(spec, Cheat(step=5, ops=(k,), element=element, delta=1 << 14), k)

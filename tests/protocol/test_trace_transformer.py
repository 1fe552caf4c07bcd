"""The transformer's step as an operator trace (issue 10, stage A):

* run_trace's post-state is program.step's, bit for bit, for SGD and AdamW at several steps
  and at steps the overflow rule skips (a norm's input past its limit, a product past 2^53,
  a state past 2^40, AdamW's first-moment bound, a diverging learning rate);
* the entries do not depend on the thread count;
* every operator's ``element`` equals its ``run`` at random indices, from the pieces its
  ``reads`` cuts, and reads at most its kind's budget: a row of each operand of a product, one
  row of a norm or a softmax, one transposed row for a sum over the batch, one value for an
  elementwise operator (the token embedding: one column of the table, which row the id
  selects being data);
* one perturbed output (an attention, norm, gradient or optimizer output) changes the trace
  root, and the first differing entry is its op's.

The helpers are the MLP's (tests/protocol/test_trace.py), with the transformer's kinds' budgets.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from protocol.errors import OverflowBoundError
from protocol.exact import init
from protocol.exact.fixedpoint import STATE_LIMIT
from protocol.exact.ops.norm import rms_norm_backward, rms_norm_forward
from protocol.exact.state import State
from protocol.exact.trace import op_def, program_of
from protocol.exact.trace import transformer as transformer_trace
from protocol.exact.trace.registry import CheckedOp, cut, op_checks
from protocol.exact.trace.run import batch_tensors, resolve
from protocol.spec import JobSpec
from protocol.trace import OpNode, Ref
from services.sim import scenarios
from tests.protocol.test_trace import (
    BUDGETS,
    assert_same_state,
    assert_trace_matches_step,
    check_elements,
    check_perturbation,
    entries_with_threads,
    states,
)

SGD = {"name": "sgd", "lr_log2": -3, "momentum": 0.875}
ADAMW = {"name": "adamw", "lr_log2": -7, "beta1": 0.9, "beta2": 0.99, "weight_decay_log2": -8}
OPTIMIZERS = {"sgd": SGD, "adamw": ADAMW}


def transformer_spec(optimizer: str | dict[str, Any] = "sgd", **overrides: Any) -> JobSpec:
    """A tiny transformer job: 2 blocks of width 16, 2 heads, 8-token windows, 4 windows."""
    model = {
        "family": "transformer",
        "vocab": 76,
        "context": 8,
        "d_model": 16,
        "heads": 2,
        "layers": 2,
        "ff": 32,
        **overrides.pop("model", {}),
    }
    data = {
        "model": model,
        "dataset": {"id": "shakespeare-char"},
        "batch_size": 4,
        "optimizer": OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer,
        **overrides,
    }
    return scenarios.spec_for(data, seed=3)


def _rows(shape: tuple[int, ...]) -> int:
    return shape[-1]


# What one element of each transformer kind may read (contract rule 3), from its inputs'
# shapes: the row of its contraction or of its row-wise operation, one value elementwise.
BUDGETS.update(
    {
        "embed_tokens": lambda node, shapes: shapes[0][0] + 2,  # a table column, 2 values
        "embedding_grad": lambda node, shapes: shapes[0][1] + math.prod(shapes[1]),
        "position_grad": lambda node, shapes: shapes[0][1],  # one transposed row (B T)
        "rms_norm": lambda node, shapes: _rows(shapes[0]),  # one row (d)
        "gain_mul": lambda node, shapes: 2,
        "rms_mean_dot": lambda node, shapes: 2 * _rows(shapes[0]),  # a row of dn and of n
        "rms_center": lambda node, shapes: 3,
        "rms_norm_dx": lambda node, shapes: 1 + _rows(shapes[1]),  # t and the row of x
        "rms_gain_grad": lambda node, shapes: 2 * shapes[0][1],  # two transposed rows
        "split_heads": lambda node, shapes: 1,
        "merge_heads": lambda node, shapes: 1,
        "attention_scores": lambda node, shapes: 2 * _rows(shapes[0]),  # a q and a k row
        "causal_softmax": lambda node, shapes: _rows(shapes[0]),  # one row of T scores
        "attention_softmax_backward": lambda node, shapes: 2 * _rows(shapes[0]),
        "residual_add": lambda node, shapes: 2,
        "gelu": lambda node, shapes: 1,
        "gelu_backward": lambda node, shapes: 2,
    }
)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_transformer_trace_post_state_is_the_step(optimizer: str) -> None:
    spec = transformer_spec(optimizer)
    for i, state in enumerate(states(spec, 4)):
        assert not assert_trace_matches_step(spec, state, i).overflowed


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_odd_widths_and_one_head(optimizer: str) -> None:
    """The step and every element, for d = 24 (the norms divide by d and d 2^16, not powers
    of two: ``div_round``), 3 heads of dh = 8, ff = 40, one block; and d = 12 with one head
    of dh = 12 (the scale C rounded)."""
    for model in (
        {"d_model": 24, "heads": 3, "ff": 40, "layers": 1},
        {"d_model": 12, "heads": 1, "ff": 20, "layers": 1, "context": 4},
    ):
        spec = transformer_spec(optimizer, model=model)
        for i, state in enumerate(states(spec, 3)):
            assert not assert_trace_matches_step(spec, state, i).overflowed
        check_elements(spec, state, 2, samples=2)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_transformer_program_is_static(optimizer: str) -> None:
    spec = transformer_spec(optimizer)
    assert program_of(spec) is program_of(spec)
    assert transformer_trace.build(spec) == program_of(spec)


def _set(state: State, name: str, value: int) -> State:
    out = dict(state)
    out[name] = state[name].clone()
    out[name].view(-1)[0] = value
    return out


@pytest.mark.parametrize(
    ("optimizer", "name", "value", "kind"),
    [
        ("sgd", "embed.position", 1 << 30, "rms_norm"),  # every window's token 0: x >= 2^27
        ("sgd", "block0.attn.qkv.weight", 1 << 39, "matmul_nt"),
        ("sgd", "block1.norm2.gain", 1 << 39, "matmul_nt"),
        ("sgd", "momentum.head.weight", STATE_LIMIT, "state_range"),
        ("adamw", "norm.gain", 1 << 39, "matmul_nt"),
        ("adamw", "adam_m.block0.attn.proj.weight", 1 << 39, "adamw_param"),
    ],
)
def test_a_skipped_step_is_skipped_in_the_trace(
    optimizer: str, name: str, value: int, kind: str
) -> None:
    spec = transformer_spec(optimizer)
    state = _set(states(spec, 2)[1], name, value)
    run = assert_trace_matches_step(spec, state, 1)
    assert run.overflowed
    first = next(n for n in program_of(spec).nodes if run.outputs[n.index] is None)
    assert first.kind == kind
    assert_same_state(run.post_state, {**state, "step": state["step"] + 1})
    _assert_checks_say_which_overflowed(spec, state, 1, run)


def _assert_checks_say_which_overflowed(spec: JobSpec, state: State, i: int, run: Any) -> None:
    """An operator whose inputs all exist overflowed exactly when one of its stated checks
    (``Check``: maxima of its inputs) fails on them."""
    batch = batch_tensors(spec, i, torch.device("cpu"))
    for node in program_of(spec).nodes:
        inputs = [resolve(ref, state, batch, run.outputs) for ref in node.inputs]
        if any(t is None for t in inputs):
            continue
        present = [t for t in inputs if t is not None]
        failing = any(c.bound(present).fails() for c in op_checks(node, present))
        assert failing == (run.outputs[node.index] is None), node.label


def test_a_diverging_run_skips_the_same_steps() -> None:
    diverging = {"name": "sgd", "lr_log2": 0, "momentum": 0.99}
    spec = transformer_spec(diverging, steps=22, checkpoint_interval=2)
    state = init(spec)
    skipped = 0
    for i in range(22):  # program.step skips from step 19 on
        run = assert_trace_matches_step(spec, state, i)
        skipped += run.overflowed
        state = run.post_state
    assert skipped > 0


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_entries_do_not_depend_on_threads(optimizer: str) -> None:
    spec = transformer_spec(optimizer)
    state = states(spec, 3)[2]
    assert entries_with_threads(spec, state, 1) == entries_with_threads(spec, state, 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_transformer_element_is_recomputed_from_its_reads(optimizer: str) -> None:
    spec = transformer_spec(optimizer)
    state = states(spec, 3)[2]
    largest = check_elements(spec, state, 2)
    kinds = {node.kind for node in program_of(spec).nodes}
    assert kinds <= largest.keys()
    # the longest contraction is the head's input gradient, over the vocabulary (76 > B T)
    assert largest["matmul_nt"] == 2 * 76
    assert largest["causal_softmax"] == 8 and largest["rms_norm"] == 16
    assert largest["attention_scores"] == 2 * 8  # a q row and a k row of dh = 8
    assert largest["split_heads"] == largest["merge_heads"] == 1


def _first(spec: JobSpec, predicate: Any) -> int:
    return next(n.index for n in program_of(spec).nodes if predicate(n))


def test_a_perturbed_output_is_located() -> None:
    spec = transformer_spec("adamw")
    state = states(spec, 2)[1]
    nodes = program_of(spec).nodes
    picks: list[Any] = [
        lambda n: n.kind == "causal_softmax",
        lambda n: n.kind == "attention_scores",
        lambda n: n.kind == "rms_norm",
        lambda n: n.kind == "rms_norm_dx",
        lambda n: n.label == "block0.attn.qkv.weight.grad",
        lambda n: n.kind == "embedding_grad",
        lambda n: n.kind == "adamw_param",
    ]
    ops = [0, len(nodes) - 1, *(_first(spec, p) for p in picks)]
    check_perturbation(spec, state, 1, ops)


def test_program_shape_and_labels() -> None:
    spec = transformer_spec()
    program = program_of(spec)
    labels = [n.label for n in program.nodes]
    assert len(set(labels)) == len(labels)
    for label in ("block1.attn.softmax", "block0.norm1.gain.grad", "embed.token.grad"):
        assert label in labels
    assert dict(program.post_state).keys() == {n for n in init(spec) if n != "step"}
    products: list[OpNode] = [n for n in program.nodes if n.kind == "matmul_nt"]
    # per block: 4 linear layers x 3 products, P v, dv, dP, dq, dk; the head's 3
    assert len(products) == 2 * (4 * 3 + 5) + 3


# --- the operators alone, on random values up to their bounds --------------------------------

B, T, D, HEADS, V, FF = 2, 4, 8, 2, 5, 6
ROWS, DH = B * T, D // HEADS


def _ints(gen: torch.Generator, shape: tuple[int, ...], bits: int) -> torch.Tensor:
    """Uniform int64 values in (-2^bits, 2^bits)."""
    span = 1 << bits
    return torch.randint(-span + 1, span, shape, generator=gen, dtype=torch.int64)


def _ids(gen: torch.Generator, high: int) -> torch.Tensor:
    return torch.randint(0, high, (B, T), generator=gen, dtype=torch.int64)


Case = tuple[dict[str, int], list[torch.Tensor], tuple[int, ...]]


def _case(kind: str, gen: torch.Generator, bits: int) -> Case:
    """Attributes, inputs and the output shape of one operator on random values."""
    heads4 = (B, HEADS, T, DH)
    square = (B, HEADS, T, T)
    rows = (ROWS, D)
    scale = 1 << 15  # attention_scale(4)
    z_bits = min(bits, 41)  # a gelu input is a linear output: |z| < 2^37 + 2^40
    cases: dict[str, Any] = {
        "rms_norm": lambda: ({}, [_ints(gen, rows, bits)], rows),
        "gain_mul": lambda: ({}, [_ints(gen, rows, bits), _ints(gen, (D,), bits)], rows),
        "rms_mean_dot": lambda: ({}, [_ints(gen, rows, bits), _ints(gen, rows, 18)], (ROWS,)),
        "rms_center": lambda: (
            {},
            [_ints(gen, rows, bits), _ints(gen, rows, 18), _ints(gen, (ROWS,), bits)],
            rows,
        ),
        "rms_norm_dx": lambda: ({}, [_ints(gen, rows, bits), _ints(gen, rows, 27)], rows),
        "rms_gain_grad": lambda: ({}, [_ints(gen, (D, ROWS), bits)] * 2, (D,)),
        "attention_scores": lambda: (
            {"scale": scale},
            [_ints(gen, heads4, bits), _ints(gen, heads4, bits)],
            square,
        ),
        "causal_softmax": lambda: ({}, [_ints(gen, square, bits)], square),
        "attention_softmax_backward": lambda: (
            {"scale": scale},
            [_ints(gen, square, 16).abs(), _ints(gen, square, bits)],
            square,
        ),
        "gelu": lambda: ({}, [_ints(gen, (ROWS, FF), z_bits), _ints(gen, (FF,), 20)], (ROWS, FF)),
        "gelu_backward": lambda: (
            {},
            [_ints(gen, (ROWS, FF), z_bits), _ints(gen, (FF,), 20), _ints(gen, (ROWS, FF), 37)],
            (ROWS, FF),
        ),
        "embed_tokens": lambda: (
            {},
            [_ints(gen, (V, D), bits), _ints(gen, (T, D), bits), _ids(gen, V)],
            rows,
        ),
        "embedding_grad": lambda: (
            {"rows": V},
            [_ints(gen, (D, ROWS), bits), _ids(gen, V)],
            (V, D),
        ),
        "position_grad": lambda: ({"context": T}, [_ints(gen, (D, ROWS), bits)], (T, D)),
        "residual_add": lambda: ({}, [_ints(gen, rows, bits), _ints(gen, rows, bits)], rows),
        "split_heads": lambda: (
            {"context": T, "heads": HEADS, "part": 2, "width": D, "transposed": 1},
            [_ints(gen, (ROWS, 3 * D), bits)],
            (B, HEADS, DH, T),
        ),
        "merge_heads": lambda: ({}, [_ints(gen, heads4, bits) for _ in range(3)], (ROWS, 3 * D)),
    }
    attrs, inputs, shape = cases[kind]()
    return attrs, inputs, shape


TRANSFORMER_KINDS = sorted(
    [
        "rms_norm",
        "gain_mul",
        "rms_mean_dot",
        "rms_center",
        "rms_norm_dx",
        "rms_gain_grad",
        "attention_scores",
        "causal_softmax",
        "attention_softmax_backward",
        "gelu",
        "gelu_backward",
        "embed_tokens",
        "embedding_grad",
        "position_grad",
        "residual_add",
        "split_heads",
        "merge_heads",
    ]
)


@pytest.mark.parametrize("kind", TRANSFORMER_KINDS)
@settings(max_examples=12, deadline=None)
@given(bits=st.integers(0, 50), seed=st.integers(0, 2**16))
@example(bits=16, seed=0)  # within every bound
@example(bits=40, seed=1)
def test_every_element_of_an_operator_matches_its_run(kind: str, bits: int, seed: int) -> None:
    """On random inputs up to 2^50 (past most bounds): wherever ``run`` passes its checks,
    every output element recomputed from the pieces ``reads`` names is ``run``'s."""
    gen = torch.Generator().manual_seed(seed)
    attrs, inputs, shape = _case(kind, gen, bits)
    refs = tuple(Ref("batch", f"in{j}") for j in range(len(inputs)))
    node = OpNode(0, kind, refs, tuple(sorted(attrs.items())), shape, kind)
    op = op_def(kind)
    assert isinstance(op, CheckedOp)
    failing = any(check.bound(inputs).fails() for check in op.checks(node, inputs))
    try:
        output = op.run(node, inputs)
    except OverflowBoundError:
        assert failing  # the stated checks are the ones run makes
        return
    assert not failing
    assert output.dtype == torch.int64 and tuple(output.shape) == shape
    shapes = [tuple(t.shape) for t in inputs]
    budget = BUDGETS[kind](node, shapes)
    for flat in range(output.numel()):
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape))
        boxes = op.reads(node, shapes, index)
        pieces = [
            None if b is None else cut(t, b).clone() for t, b in zip(inputs, boxes, strict=True)
        ]
        assert sum(0 if p is None else p.numel() for p in pieces) <= budget
        assert op.element(node, index, pieces) == int(output[index].item()), (kind, index)


def _run_op(kind: str, inputs: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    refs = tuple(Ref("batch", f"in{j}") for j in range(len(inputs)))
    return op_def(kind).run(OpNode(0, kind, refs, (), shape, kind), inputs)


def _norm_backward_as_operators(
    x: torch.Tensor, gain: torch.Tensor, dy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, grad_gain) by the program's operators, one after the other."""
    rows, d = x.shape
    n = _run_op("rms_norm", [x], (rows, d))
    gain_grad = _run_op("rms_gain_grad", [dy.T.contiguous(), n.T.contiguous()], (d,))
    dn = _run_op("gain_mul", [dy, gain], (rows, d))
    c = _run_op("rms_mean_dot", [dn, n], (rows,))
    t = _run_op("rms_center", [dn, n, c], (rows, d))
    return _run_op("rms_norm_dx", [t, x], (rows, d)), gain_grad


@settings(max_examples=40, deadline=None)
@given(
    x_bits=st.integers(0, 28),
    gain_bits=st.integers(0, 30),
    dy_bits=st.integers(0, 36),
    seed=st.integers(0, 2**16),
)
@example(x_bits=20, gain_bits=17, dy_bits=20, seed=0)  # a training step's sizes
@example(x_bits=20, gain_bits=22, dy_bits=24, seed=3)  # |t| >= 2^45: int64 division
@example(x_bits=20, gain_bits=28, dy_bits=30, seed=3)  # |t| >= 2^57: an overflow
def test_the_norm_backward_operators_are_rms_norm_backward(
    x_bits: int, gain_bits: int, dy_bits: int, seed: int
) -> None:
    """The norm's backward as five operators overflows exactly when ``rms_norm_backward``
    does, and otherwise gives its dx and its gain gradient (rounded once), bit for bit."""
    gen = torch.Generator().manual_seed(seed)
    x, gain, dy = (
        _ints(gen, (ROWS, D), x_bits),
        _ints(gen, (D,), gain_bits),
        _ints(gen, (ROWS, D), dy_bits),
    )
    try:
        _, saved = rms_norm_forward(x, torch.full((D,), 1 << 16, dtype=torch.int64))
        expected = rms_norm_backward(saved._replace(gain=gain, gain_max=-1), dy)
    except OverflowBoundError:
        expected = None
    try:
        got: tuple[torch.Tensor, torch.Tensor] | None = _norm_backward_as_operators(x, gain, dy)
    except OverflowBoundError:
        got = None
    assert (got is None) == (expected is None)
    if got is not None and expected is not None:
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])

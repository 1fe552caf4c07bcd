"""The step as an operator trace (issue 10, stage A), MLP family and the shared operators:

* run_trace's post-state is program.step's, bit for bit, for SGD and AdamW at several steps
  and at steps the overflow rule skips (a state past 2^40, a product past 2^53, AdamW's
  first-moment bound);
* the entries do not depend on the thread count;
* every operator's ``element`` equals its ``run`` at random indices, from the pieces its
  ``reads`` cuts, and reads at most a fixed multiple of its contraction, row or window;
* one perturbed output changes the trace root, and the first differing entry is its op's.

The helpers take any spec: tests/protocol/test_trace_cnn.py runs them on the CNN.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import OverflowBoundError
from protocol.exact import init, state_hash, step
from protocol.exact.fixedpoint import STATE_LIMIT
from protocol.exact.state import State
from protocol.exact.trace import TraceRun, op_def, program_of, run_trace
from protocol.exact.trace.registry import cut, op_checks
from protocol.exact.trace.run import batch_tensors, execute, resolve
from protocol.spec import JobSpec, parse_spec
from protocol.trace import OVERFLOW_ENTRY, OpNode, Program
from tests.conftest import tiny_spec_dict

ADAMW = {"name": "adamw", "lr_log2": -7, "beta1": 0.9, "beta2": 0.99, "weight_decay_log2": -8}


def mlp_spec(optimizer: str | dict[str, Any] = "sgd", **overrides: Any) -> JobSpec:
    data = tiny_spec_dict(**overrides)
    if optimizer == "adamw":
        data["optimizer"] = ADAMW
    elif isinstance(optimizer, dict):
        data["optimizer"] = optimizer
    return parse_spec(data)


def assert_same_state(a: State, b: State) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name
    assert state_hash(a) == state_hash(b)


def states(spec: JobSpec, count: int) -> list[State]:
    """States 0..count-1 of ``spec`` by program.step."""
    out = [init(spec)]
    for i in range(count - 1):
        out.append(step(spec, out[-1], i))
    return out


def assert_trace_matches_step(spec: JobSpec, state: State, i: int) -> TraceRun:
    run = run_trace(spec, state, i)
    expected = step(spec, state, i)
    assert_same_state(run.post_state, expected)
    skipped = (
        all(torch.equal(expected[n], state[n]) for n in state if n != "step") and run.overflowed
    )
    assert run.overflowed == skipped
    assert len(run.entries) == len(program_of(spec).nodes)
    assert all(
        (e == OVERFLOW_ENTRY) == (o is None) for e, o in zip(run.entries, run.outputs, strict=True)
    )
    return run


# --- per-element recomputation and its cost -------------------------------------------------


def contraction(node: OpNode, shapes: list[tuple[int, ...]]) -> int:
    """The per-element budget of an operator: what one element may read (contract rule 3)."""
    kind = node.kind
    if kind == "matmul_nt":
        return 2 * shapes[0][-1] + 1  # a row of each operand and one bias value
    if kind == "softmax_xent_grad":
        return shapes[0][-1] + 1  # a row of logits and its target
    if kind == "row_sum":
        return math.prod(shapes[0][1:])  # one row
    return int(BUDGETS[kind](node, shapes))


BUDGETS: dict[str, Any] = {
    "transpose": lambda node, shapes: 1,
    "rearrange": lambda node, shapes: 1,
    "relu": lambda node, shapes: 1,
    "relu_grad": lambda node, shapes: 2,
    "state_range": lambda node, shapes: 0,
    "sgd_momentum": lambda node, shapes: 2,
    "sgd_param": lambda node, shapes: 2,
    "adamw_m": lambda node, shapes: 2,
    "adamw_v": lambda node, shapes: 2,
    "adamw_param": lambda node, shapes: 4,
    "im2col": lambda node, shapes: 1,
    "col2im": lambda node, shapes: (
        math.ceil(node.attr("kernel") / node.attr("stride")) ** 2 * node.attr("kernel") ** 2
    ),
    "maxpool": lambda node, shapes: node.attr("pool") ** 2,
    "maxpool_grad": lambda node, shapes: node.attr("pool") ** 2 + 1,
    "avgpool": lambda node, shapes: node.attr("pool") ** 2,
    "avgpool_grad": lambda node, shapes: 1,
}


def node_inputs(
    node: OpNode, state: State, batch: dict[str, torch.Tensor], run: TraceRun
) -> list[torch.Tensor]:
    inputs = [resolve(ref, state, batch, run.outputs) for ref in node.inputs]
    assert all(t is not None for t in inputs)
    return [t for t in inputs if t is not None]


def check_elements(
    spec: JobSpec, state: State, i: int, samples: int = 4, seed: int = 0
) -> dict[str, int]:
    """``element`` == ``run``[index] for ``samples`` random indices of every operator, each
    from the pieces its ``reads`` cuts; each within its kind's budget. Returns the largest
    number of input values one element read, per kind."""
    program = program_of(spec)
    run = run_trace(spec, state, i)
    assert not run.overflowed
    batch = batch_tensors(spec, i, torch.device("cpu"))
    rng = random.Random(seed)
    largest: dict[str, int] = {}
    for node in program.nodes:
        op = op_def(node.kind)
        inputs = node_inputs(node, state, batch, run)
        shapes = [tuple(t.shape) for t in inputs]
        whole_out = op.run(node, inputs)
        output = run.outputs[node.index]
        assert output is not None and torch.equal(whole_out, output), node.label
        count = math.prod(node.shape)
        for flat in sorted({rng.randrange(count) for _ in range(samples)} | {0, count - 1}):
            index = unravel(flat, node.shape)
            boxes = op.reads(node, shapes, index)
            assert len(boxes) == len(inputs), node.label
            pieces = [
                None if box is None else cut(t, box).clone()
                for t, box in zip(inputs, boxes, strict=True)
            ]
            read = sum(0 if p is None else p.numel() for p in pieces)
            assert read <= contraction(node, shapes), (node.label, read)
            largest[node.kind] = max(largest.get(node.kind, 0), read)
            value = op.element(node, index, pieces)
            assert value == int(output[index].item()), (node.label, index)
    return largest


def unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for dim in reversed(shape):
        index.append(flat % dim)
        flat //= dim
    return tuple(reversed(index))


def check_perturbation(spec: JobSpec, state: State, i: int, ops: list[int]) -> None:
    """A cheater adds 1 to one element of op k's output and executes the rest of the step
    on it: the root changes and the first entry that differs from the honest trace is op
    k's (everything before it is untouched)."""
    program = program_of(spec)
    batch = batch_tensors(spec, i, torch.device("cpu"))
    honest = execute(program, state, batch)
    assert honest.entries == run_trace(spec, state, i).entries
    for k in ops:

        def tamper(node: OpNode, output: torch.Tensor, k: int = k) -> torch.Tensor:
            if node.index != k:
                return output
            bad = output.clone()
            bad.view(-1)[bad.numel() // 2] += 1
            return bad

        cheat = execute(program, state, batch, tamper)
        assert cheat.root != honest.root
        pairs = zip(cheat.entries, honest.entries, strict=True)
        differing = [j for j, (a, b) in enumerate(pairs) if a != b]
        assert differing[0] == k


def check_verdicts(spec: JobSpec, state: State, i: int) -> int:
    """Every operator whose inputs exist: ``run`` raises OverflowBoundError exactly when one
    of its stated ``checks`` fails on those inputs. Returns how many raised."""
    run = run_trace(spec, state, i)
    batch = batch_tensors(spec, i, torch.device("cpu"))
    raised = 0
    for node in program_of(spec).nodes:
        inputs = [resolve(ref, state, batch, run.outputs) for ref in node.inputs]
        present = [t for t in inputs if t is not None]
        if len(present) != len(inputs):
            assert run.outputs[node.index] is None
            continue
        try:
            op_def(node.kind).run(node, present)
            failed = False
        except OverflowBoundError:
            failed = True
        assert failed == (run.outputs[node.index] is None), node.label
        verdict = any(c.bound(present).fails() for c in op_checks(node, present))
        assert failed == verdict, node.label
        raised += failed
    return raised


def scaled_states(spec: JobSpec) -> list[State]:
    """State 2 with every parameter and buffer times 1, 2^8, 2^16 and 2^22: the larger ones
    fail products, sums and the softmax's bound (and still pass the state's range)."""
    base = states(spec, 3)[2]
    out = []
    for shift in (0, 8, 16, 22):
        out.append({n: t if n == "step" else t << shift for n, t in base.items()})
    return out


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mlp_trace_post_state_is_the_step(optimizer: str) -> None:
    spec = mlp_spec(optimizer)
    for i, state in enumerate(states(spec, 4)):
        assert not assert_trace_matches_step(spec, state, i).overflowed


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mlp_program_is_static(optimizer: str) -> None:
    spec = mlp_spec(optimizer)
    assert program_of(spec) is program_of(spec)
    from protocol.exact.trace import mlp

    assert mlp.build(spec) == program_of(spec)


def _scaled(state: State, name: str, value: int) -> State:
    out = dict(state)
    out[name] = state[name].clone()
    out[name].view(-1)[0] = value
    return out


@pytest.mark.parametrize(
    ("optimizer", "name", "value", "kind"),
    [
        ("sgd", "layer0.weight", STATE_LIMIT, "state_range"),
        ("sgd", "momentum.layer1.bias", -STATE_LIMIT, "state_range"),
        ("sgd", "layer0.weight", 1 << 39, "matmul_nt"),
        ("adamw", "layer1.weight", 1 << 39, "matmul_nt"),
        ("adamw", "adam_m.layer1.bias", 1 << 39, "adamw_param"),
    ],
)
def test_a_skipped_step_is_skipped_in_the_trace(
    optimizer: str, name: str, value: int, kind: str
) -> None:
    spec = mlp_spec(optimizer)
    state = _scaled(states(spec, 2)[1], name, value)
    run = assert_trace_matches_step(spec, state, 1)
    assert run.overflowed
    first = next(n for n in program_of(spec).nodes if run.outputs[n.index] is None)
    assert first.kind == kind
    assert_same_state(run.post_state, {**state, "step": state["step"] + 1})


def test_a_diverging_run_skips_the_same_steps() -> None:
    spec = mlp_spec(optimizer={"name": "sgd", "lr_log2": 0, "momentum": 0.99}, steps=64)
    state = init(spec)
    skipped = 0
    for i in range(64):
        run = assert_trace_matches_step(spec, state, i)
        skipped += run.overflowed
        state = run.post_state
    assert skipped > 0


def entries_with_threads(spec: JobSpec, state: State, threads: int) -> list[bytes]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return list(run_trace(spec, state, 2).entries)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_entries_do_not_depend_on_threads(optimizer: str) -> None:
    spec = mlp_spec(optimizer)
    state = states(spec, 3)[2]
    assert entries_with_threads(spec, state, 1) == entries_with_threads(spec, state, 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_mlp_element_is_recomputed_from_its_reads(optimizer: str) -> None:
    spec = mlp_spec(
        optimizer, model={"family": "mlp", "input_dim": 16, "hidden": [12, 8], "classes": 4}
    )
    state = states(spec, 3)[2]
    largest = check_elements(spec, state, 2)
    assert largest["matmul_nt"] <= 2 * 16 + 1
    assert largest["transpose"] == 1


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_stated_checks_are_the_checks_run_makes(optimizer: str) -> None:
    spec = mlp_spec(optimizer)
    raised = [check_verdicts(spec, state, 2) for state in scaled_states(spec)]
    assert raised[0] == 0 and max(raised) > 0
    for state in scaled_states(spec):
        assert_trace_matches_step(spec, state, 2)


def test_a_perturbed_output_is_located() -> None:
    spec = mlp_spec("adamw")
    state = states(spec, 2)[1]
    count = len(program_of(spec).nodes)
    check_perturbation(spec, state, 1, [0, count // 3, count // 2, count - 1])


def test_program_shape_and_labels() -> None:
    program: Program = program_of(mlp_spec())
    labels = [n.label for n in program.nodes]
    assert len(set(labels)) == len(labels)
    assert "layer0.forward" in labels and "layer1.weight.grad" in labels
    assert dict(program.post_state).keys() == {n for n in init(mlp_spec()) if n != "step"}


def _node(kind: str, shape: tuple[int, ...], **attrs: int | str) -> OpNode:
    return OpNode(0, kind, (), tuple(sorted(attrs.items())), shape, kind)


def _crafted() -> list[tuple[OpNode, list[torch.Tensor]]]:
    """Operators on inputs around each of their limits (both sides)."""
    from protocol.exact.trace import conv_ops  # noqa: F401  (registers the pooling operators)

    cases: list[tuple[OpNode, list[torch.Tensor]]] = []
    for top in (2**39, 2**58, 2**60 - 1, 2**60, 2**59 + 3, 2**61 - 1, 2**61):
        row = torch.tensor([[top, -5, 0, 7]])
        cases.append((_node("row_sum", (1,)), [row]))
        cases.append((_node("softmax_xent_grad", (1, 4)), [row, torch.tensor([2])]))
        cases.append((_node("state_range", ()), [row]))
        image = torch.tensor([[[[top, 1], [2, 3]]]])
        cases.append((_node("avgpool", (1, 1, 1, 1), pool=2), [image]))
        grad = torch.tensor([[[[top]]]])
        cases.append((_node("avgpool_grad", (1, 1, 2, 2), pool=2), [grad]))
    for a_top in (2**20, 2**26, 2**27):
        a = torch.tensor([[a_top, 3, -2, 1]])
        b = torch.tensor([[2**24, 1, 1, 1], [5, 6, 7, 8]])
        cases.append((_node("matmul_nt", (1, 2), shift=16, bias=0), [a, b]))
        cases.append((_node("matmul_nt", (1, 2), shift=16, bias=0, a_max=a_top * 2), [a, b]))
    for g_top in (2**20, 2**31):
        g = torch.tensor([g_top, -1])
        zeros = torch.zeros(2, dtype=torch.int64)
        attrs: dict[str, int | str] = {"beta1": 58982, "grad_limit": 2**24}
        cases.append((_node("adamw_m", (2,), **attrs), [zeros, g]))
    for m_top in (2**20, 2**30, 2**40):
        m = torch.tensor([m_top, 1])
        w = torch.zeros(2, dtype=torch.int64)
        attrs = {"beta1": 58982, "beta2": 64880, "eps_log2": -8, "lr_log2": -7, "batch_log2": 3}
        node = _node("adamw_param", (2,), **attrs)
        cases.append((node, [w, m, torch.ones(2, dtype=torch.int64), torch.tensor(0)]))
    return cases


def test_stated_checks_decide_every_crafted_overflow() -> None:
    outcomes: dict[str, set[bool]] = {}
    for node, inputs in _crafted():
        try:
            op_def(node.kind).run(node, inputs)
            failed = False
        except OverflowBoundError:
            failed = True
        verdict = any(c.bound(inputs).fails() for c in op_checks(node, inputs))
        assert failed == verdict, (node.kind, node.attrs, inputs)
        outcomes.setdefault(node.kind, set()).add(failed)
    assert all(seen == {True, False} for seen in outcomes.values()), outcomes


@settings(max_examples=25, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 12), max_size=2),
    adamw=st.booleans(),
    lr_log2=st.integers(-8, 0),
    at=st.integers(0, 2),
    pick=st.integers(0, 99),
    shift=st.sampled_from([0, 6, 12, 18, 23, 26]),
)
def test_any_mlp_state_steps_the_same_as_a_trace(
    hidden: list[int], adamw: bool, lr_log2: int, at: int, pick: int, shift: int
) -> None:
    """Random widths, optimizers and learning rates, one state tensor scaled by 2^shift (up
    to past the state's range): the trace's post-state is the step's, skipped or not."""
    optimizer: dict[str, Any] = (
        {**ADAMW, "lr_log2": lr_log2}
        if adamw
        else {"name": "sgd", "lr_log2": lr_log2, "momentum": 0.875}
    )
    model = {"family": "mlp", "input_dim": 16, "hidden": hidden, "classes": 4}
    spec = mlp_spec(optimizer, model=model)
    state = states(spec, at + 1)[at]
    names = sorted(n for n in state if n != "step")
    name = names[pick % len(names)]
    state = {**state, name: state[name] << shift}
    assert_trace_matches_step(spec, state, at)

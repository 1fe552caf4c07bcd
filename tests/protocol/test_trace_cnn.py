"""The CNN's step as an operator trace (issue 10, stage A): the post-state is program.step's
for SGD and AdamW, max and average pooling, padding and strides, skipped steps included;
every operator's element is recomputed from its reads (im2col one value, col2im one window of
patches, pooling one window); a perturbed output is located."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.errors import SpecError
from protocol.exact.fixedpoint import STATE_LIMIT
from protocol.exact.trace import cnn, op_def, program_of
from protocol.exact.trace.registry import cut
from protocol.models import CnnSpec
from protocol.spec import JobSpec
from protocol.trace import OpNode
from tests.protocol.test_cnn import SPECS, cnn_spec
from tests.protocol.test_trace import (
    ADAMW,
    _scaled,
    assert_trace_matches_step,
    check_elements,
    check_perturbation,
    check_verdicts,
    entries_with_threads,
    scaled_states,
    states,
)

STRIDED: list[dict[str, Any]] = [
    {"channels": 3, "kernel": 3, "padding": 1, "pool": 1},
    {"channels": 4, "kernel": 3, "stride": 2, "padding": 1, "pool": 2, "pool_type": "avg"},
]
CASES: dict[str, JobSpec] = {
    **SPECS,
    "stride 2 over a padded 3x3": cnn_spec(STRIDED, [8]),
    "max-pool, two convs, adamw": cnn_spec(
        [
            {"channels": 4, "kernel": 3, "padding": 1, "pool": 2, "pool_type": "max"},
            {"channels": 6, "kernel": 3, "padding": 1, "pool": 2},
        ],
        [12],
        optimizer=ADAMW,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cnn_trace_post_state_is_the_step(name: str) -> None:
    spec = CASES[name]
    assert cnn.build(spec) == program_of(spec)  # static: the spec alone decides it
    for i, state in enumerate(states(spec, 3)):
        assert not assert_trace_matches_step(spec, state, i).overflowed


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_cnn_element_is_recomputed_from_its_reads(name: str) -> None:
    spec = CASES[name]
    largest = check_elements(spec, states(spec, 2)[1], 1, samples=3)
    assert largest["im2col"] == 1
    assert isinstance(spec.model, CnnSpec)
    if "col2im" in largest:
        assert largest["col2im"] <= max(
            math.ceil(c.kernel / c.stride) ** 2 * c.kernel**2 for c in spec.model.conv
        )


@pytest.mark.parametrize(
    ("name", "tensor", "value", "kind"),
    [
        ("stride 2 over a padded 3x3", "conv1.weight", STATE_LIMIT, "state_range"),
        ("stride 2 over a padded 3x3", "conv0.weight", 1 << 39, "matmul_nt"),
        ("max-pool, two convs, adamw", "adam_m.conv1.bias", 1 << 39, "adamw_param"),
    ],
)
def test_a_skipped_cnn_step_is_skipped_in_the_trace(
    name: str, tensor: str, value: int, kind: str
) -> None:
    spec = CASES[name]
    state = _scaled(states(spec, 2)[1], tensor, value)
    run = assert_trace_matches_step(spec, state, 1)
    first = next(n for n in program_of(spec).nodes if run.outputs[n.index] is None)
    assert first.kind == kind


def test_a_perturbed_cnn_output_is_located() -> None:
    spec = CASES["stride 2 over a padded 3x3"]
    nodes = program_of(spec).nodes
    picks = [n.index for n in nodes if n.kind in {"im2col", "col2im", "avgpool_grad"}]
    check_perturbation(spec, states(spec, 2)[1], 1, picks)


def test_cnn_entries_do_not_depend_on_threads() -> None:
    spec = CASES["max-pool, two convs, adamw"]
    state = states(spec, 3)[2]
    assert entries_with_threads(spec, state, 1) == entries_with_threads(spec, state, 2)


@pytest.mark.parametrize("name", ["stride 2 over a padded 3x3", "max-pool, two convs, adamw"])
def test_stated_cnn_checks_are_the_checks_run_makes(name: str) -> None:
    spec = CASES[name]
    raised = [check_verdicts(spec, state, 2) for state in scaled_states(spec)]
    assert raised[0] == 0 and max(raised) > 0
    for state in scaled_states(spec):
        assert_trace_matches_step(spec, state, 2)


@settings(max_examples=40, deadline=None)
@given(
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    size=st.integers(4, 7),
    channels=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_im2col_and_col2im_elements_for_any_geometry(
    kernel: int, stride: int, padding: int, size: int, channels: int, seed: int
) -> None:
    """Every element of im2col and col2im, over conv geometries the specs allow, equals the
    whole operator's, from one value / one window of patches."""
    oh = (size + 2 * padding - kernel) // stride + 1
    assume(oh >= 1 and padding < kernel)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-(2**20), 2**20, (2, channels, size, size), generator=gen)
    attrs = (("kernel", kernel), ("padding", padding), ("stride", stride))
    patches = OpNode(0, "im2col", (), attrs, (2 * oh * oh, channels * kernel**2), "im2col")
    cols_shape = (2, oh, oh, channels, kernel, kernel)
    fold = OpNode(1, "col2im", (), attrs, tuple(x.shape), "col2im")
    cols = torch.randint(-(2**30), 2**30, cols_shape, generator=gen)
    budget = math.ceil(kernel / stride) ** 2 * kernel**2
    for node, source in ((patches, x), (fold, cols)):
        op = op_def(node.kind)
        whole = op.run(node, [source])
        assert tuple(whole.shape) == node.shape
        for flat in range(whole.numel()):
            index = tuple(int(v) for v in torch.unravel_index(torch.tensor(flat), node.shape))
            (box,) = op.reads(node, [tuple(source.shape)], index)
            piece = None if box is None else cut(source, box).clone()
            assert piece is None or piece.numel() <= (1 if node.kind == "im2col" else budget)
            assert op.element(node, index, [piece]) == int(whole[index]), (node.kind, index)


@settings(max_examples=12, deadline=None)
@given(
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    pool=st.integers(1, 2),
    max_pool=st.booleans(),
    two=st.booleans(),
    adamw=st.booleans(),
    shift=st.sampled_from([0, 12, 20, 26]),
    pick=st.integers(0, 99),
)
def test_any_cnn_state_steps_the_same_as_a_trace(
    kernel: int,
    stride: int,
    padding: int,
    pool: int,
    max_pool: bool,
    two: bool,
    adamw: bool,
    shift: int,
    pick: int,
) -> None:
    """Random conv geometries and optimizers, one state tensor scaled by 2^shift: the
    trace's post-state is the step's, skipped or not."""
    layer: dict[str, Any] = {"channels": 2, "kernel": kernel, "stride": stride, "padding": padding}
    layer |= {"pool": pool, "pool_type": "max" if max_pool else "avg"}
    conv = [layer, {"channels": 3, "kernel": 2, "padding": 1, "pool": 1}] if two else [layer]
    try:
        spec = cnn_spec(conv, [6], batch_size=8, **({"optimizer": ADAMW} if adamw else {}))
    except SpecError:
        assume(False)
        return
    state = states(spec, 2)[1]
    names = sorted(n for n in state if n != "step")
    name = names[pick % len(names)]
    state = {**state, name: state[name] << shift}
    assert_trace_matches_step(spec, state, 1)

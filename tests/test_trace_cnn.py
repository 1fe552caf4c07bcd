"""The CNN's step as an operator trace (issue 10, stage A): the post-state is program.step's
for SGD and AdamW, max and average pooling, padding and strides, skipped steps included;
every operator's element is recomputed from its reads (im2col one value, col2im one window of
patches, pooling one window); a perturbed output is located."""

from __future__ import annotations

import math
from typing import Any

import pytest

from protocol.exact.fixedpoint import STATE_LIMIT
from protocol.exact.trace import program_of
from protocol.spec import JobSpec
from tests.test_cnn import SPECS, cnn_spec
from tests.test_trace import (
    ADAMW,
    _entries_with_threads,
    _scaled,
    assert_trace_matches_step,
    check_elements,
    check_perturbation,
    check_verdicts,
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
    for i, state in enumerate(states(spec, 3)):
        assert not assert_trace_matches_step(spec, state, i).overflowed


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_cnn_element_is_recomputed_from_its_reads(name: str) -> None:
    spec = CASES[name]
    largest = check_elements(spec, states(spec, 2)[1], 1, samples=3)
    assert largest["im2col"] == 1
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
    assert _entries_with_threads(spec, state, 1) == _entries_with_threads(spec, state, 2)


@pytest.mark.parametrize("name", ["stride 2 over a padded 3x3", "max-pool, two convs, adamw"])
def test_stated_cnn_checks_are_the_checks_run_makes(name: str) -> None:
    spec = CASES[name]
    raised = [check_verdicts(spec, state, 2) for state in scaled_states(spec)]
    assert raised[0] == 0 and max(raised) > 0
    for state in scaled_states(spec):
        assert_trace_matches_step(spec, state, 2)

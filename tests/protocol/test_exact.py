"""The exact VM: pure steps, reproducible segments, canonical states, clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from protocol.errors import EncodingError, OverflowBoundError, StateMismatchError
from protocol.exact import (
    NativeTrainer,
    decode_state,
    encode_state,
    evaluate,
    init,
    run,
    state_hash,
    state_step,
    step,
    train_trajectory,
)
from protocol.exact.classifier import init_weight
from protocol.exact.device import SELFTEST_DIGEST, selftest_digest
from protocol.randomness import random_below
from protocol.spec import JobSpec
from services.jobspec import load_spec
from tests.conftest import EXAMPLE_SPEC
from tests.ledger_helpers import tiny_spec


def test_selftest_digest_on_cpu() -> None:
    assert selftest_digest(torch.device("cpu")) == SELFTEST_DIGEST


def test_init_is_deterministic_and_seeded(tiny_spec: JobSpec) -> None:
    assert state_hash(init(tiny_spec)) == state_hash(init(tiny_spec))
    other = JobSpec(**{**tiny_spec.__dict__, "seed": tiny_spec.seed + 1})
    assert state_hash(init(other)) != state_hash(init(tiny_spec))


def test_step_is_pure(tiny_spec: JobSpec) -> None:
    state = init(tiny_spec)
    before = encode_state(state)
    after = step(tiny_spec, state, 0)
    assert encode_state(state) == before
    assert int(after["step"]) == 1
    assert state_hash(after) == state_hash(step(tiny_spec, init(tiny_spec), 0))


def test_step_rejects_wrong_step_number(tiny_spec: JobSpec) -> None:
    with pytest.raises(StateMismatchError, match="not 3"):
        step(tiny_spec, init(tiny_spec), 3)


def test_every_segment_reproduces_its_committed_leaves(tiny_spec: JobSpec) -> None:
    trajectory = train_trajectory(tiny_spec)
    interval = tiny_spec.checkpoint_interval
    for segment in range(tiny_spec.num_segments):
        pre = decode_state(trajectory.blobs[trajectory.leaves[segment]])
        post = run(tiny_spec, pre, segment * interval, (segment + 1) * interval)
        assert state_hash(post) == trajectory.leaves[segment + 1]


def test_resume_from_checkpoint_matches_full_run(tiny_spec: JobSpec) -> None:
    full = train_trajectory(tiny_spec)
    middle = decode_state(full.blobs[full.leaves[3]])
    resumed = train_trajectory(tiny_spec, start_state=middle)
    assert resumed.leaves == full.leaves[3:]


def test_state_roundtrip_and_hash(tiny_spec: JobSpec) -> None:
    state = step(tiny_spec, init(tiny_spec), 0)
    blob = encode_state(state)
    decoded = decode_state(blob)
    assert encode_state(decoded) == blob
    assert state_hash(decoded) == state_hash(state)


@pytest.mark.parametrize("cut", [3, 20, -1])
def test_truncated_blob_is_rejected(tiny_spec: JobSpec, cut: int) -> None:
    blob = encode_state(init(tiny_spec))
    with pytest.raises(EncodingError):
        decode_state(blob[:cut])


def test_state_with_wrong_shape_is_rejected(tiny_spec: JobSpec) -> None:
    state = init(tiny_spec)
    state["layer0.weight"] = state["layer0.weight"][:, :3]
    with pytest.raises((StateMismatchError, RuntimeError)):
        step(tiny_spec, state, 0)


def test_a_step_that_would_leave_the_exact_range_is_skipped(tiny_spec: JobSpec) -> None:
    """The overflow rule: the step changes nothing but the counter (never a wrapped value,
    never an error an honest solver could be slashed for)."""
    state = init(tiny_spec)
    state["layer0.weight"] = torch.full_like(state["layer0.weight"], 2**40)
    after = step(tiny_spec, state, 0)
    assert state_step(after) == 1
    assert sorted(after) == sorted(state)
    for name in state:
        if name != "step":
            assert torch.equal(after[name], state[name]), name
    with pytest.raises(OverflowBoundError):
        evaluate(tiny_spec, state)  # reporting accuracy has no rule to fall back on


def test_example_reaches_accuracy_close_to_native() -> None:
    spec, _ = load_spec(EXAMPLE_SPEC)
    trained = train_trajectory(spec, keep_blobs=False).final_state
    assert trained is not None
    exact = evaluate(spec, trained)
    native = NativeTrainer(spec)
    for _ in range(spec.steps):
        native.step()
    assert exact >= 0.90
    assert abs(exact - native.evaluate()) <= 0.03


def test_a_step_from_a_state_past_the_range_limit_is_skipped(tiny_spec: JobSpec) -> None:
    """Elementwise int64 arithmetic could wrap past STATE_LIMIT even when every product is
    within 2^53 (a bias is in no product): the overflow rule covers it too."""
    from protocol.exact.fixedpoint import STATE_LIMIT

    state = init(tiny_spec)
    last_bias = sorted(name for name in state if name.endswith(".bias"))[-1]
    state[last_bias] = torch.full_like(state[last_bias], STATE_LIMIT)
    after = step(tiny_spec, state, 0)
    assert state_step(after) == 1
    assert torch.equal(after[last_bias], state[last_bias])
    state[last_bias] = torch.full_like(state[last_bias], STATE_LIMIT - 1)
    assert not torch.equal(step(tiny_spec, state, 0)[last_bias], state[last_bias])
    # The most negative int64 is its own absolute value: the check must not wrap with it.
    for value in (-STATE_LIMIT, -(2**63)):
        state[last_bias] = torch.full_like(state[last_bias], value)
        assert torch.equal(step(tiny_spec, state, 0)[last_bias], state[last_bias]), value


def test_initial_weights_are_the_counter_based_stream_mod_the_bound() -> None:
    """``init_weight`` reads the stream as one array; its values are ``random_below``'s."""
    spec = tiny_spec()
    shape = (37, 11)
    limit = math.isqrt((1 << 32) // 37)
    expected = random_below("init", spec.seed, "w", count=37 * 11, bound=2 * limit + 1)
    got = init_weight(spec, "w", 37, shape)
    assert got.dtype == torch.int64 and got.flatten().tolist() == [v - limit for v in expected]

"""AdamW in fixed point: exact integer sqrt and division, the update against float64, the spec,
the layout, determinism across thread counts, segment re-execution and a protocol run."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import SpecError
from protocol.exact import optim, program
from protocol.exact.fixedpoint import ONE, div_round, isqrt_int64, pow_fixed
from protocol.exact.state import state_hash
from protocol.layout import expected_shapes, state_blob_size
from protocol.spec import parse_spec, spec_hash
from services.sim import scenarios
from tests.adversarial.play import assert_outcome
from tests.conftest import EXAMPLE_SPEC, ROOT, tiny_spec_dict, train_in_subprocess

ADAMW_EXAMPLE = ROOT / "examples" / "digits-mlp-adamw.yaml"
ADAMW = {
    "name": "adamw",
    "lr_log2": -6,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps_log2": -12,
    "weight_decay_log2": -7,
}
# spec_hash of examples/digits-mlp.yaml computed from the code before AdamW existed.
SGD_EXAMPLE_HASH = "dfe94a8b8eb105ad1bc8caf47b73d1d8c06b9daefc819fdba3292029561a1970"


# --- integer square root and division -----------------------------------------------------


def _check_isqrt(values: list[int]) -> None:
    got = isqrt_int64(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [math.isqrt(v) for v in values]


def test_isqrt_edges() -> None:
    values = [0, 1, 2, 3, 4, 5, 8, 9, 10, 2**62 - 1, 2**62 - 2, 2**53, 2**53 + 1, 2**53 - 1]
    for k in [1, 2, 3, 2**16, 2**26 + 1, 2**31 - 1, 3037000499 // 2, 2**30 * 3 // 2]:
        values += [k * k - 1, k * k, k * k + 1]
    values += [(2**31 - 1) ** 2 + d for d in range(-3, 4)]
    _check_isqrt([v for v in values if 0 <= v < 2**62])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**62 - 1), min_size=1, max_size=200))
def test_isqrt_matches_math_isqrt(values: list[int]) -> None:
    _check_isqrt(values)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=100), st.integers(-2, 2))
def test_isqrt_near_squares(roots: list[int], delta: int) -> None:
    _check_isqrt([min(max(r * r + delta, 0), 2**62 - 1) for r in roots])


@settings(max_examples=100, deadline=None)
@given(st.integers(-(2**60), 2**60), st.integers(1, 2**45))
def test_div_round_is_half_up(a: int, b: int) -> None:
    exact = Fraction(a, b)
    expected = math.floor(exact + Fraction(1, 2))
    assert int(div_round(torch.tensor([a]), torch.tensor([b]))[0]) == expected


def test_pow_fixed() -> None:
    assert pow_fixed(3 << 29, 0, 30) == 1 << 30
    assert pow_fixed(3 << 29, 1, 30) == 3 << 29
    assert abs(pow_fixed(round(0.9 * 2**30), 50, 30) / 2**30 - 0.9**50) < 1e-8


# --- the update against float64 -----------------------------------------------------------


def _spec(**optimizer: Any) -> Any:
    return parse_spec(tiny_spec_dict(optimizer={**ADAMW, **optimizer}))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decay", [None, -7])
def test_update_matches_float64(seed: int, decay: int | None) -> None:
    """Tolerance: 2 units of Q16 in every parameter (each term is requantized at most a few
    times, each time by half a unit, relative to the float64 formula on the same integers)."""
    spec = _spec(weight_decay_log2=decay)
    gen = torch.Generator().manual_seed(seed)
    state = program.init(spec)
    i = int(torch.randint(0, 30, (1,), generator=gen))
    state["step"] = torch.tensor(i)
    batch = spec.batch_size
    grads = {}
    for name in [k for k in state if k.startswith("layer")]:
        shape = state[name].shape
        grads[name] = torch.randint(-(2**20), 2**20, shape, generator=gen)
        state["adam_m." + name] = torch.randint(-(2**18), 2**18, shape, generator=gen)
        state["adam_v." + name] = torch.randint(0, 2**30, shape, generator=gen)
    out = optim.adamw_update(spec, state, i, grads)
    opt = spec.optimizer
    b1, b2 = opt.beta1_q16 / ONE, opt.beta2_q16 / ONE
    lr, eps, t = 2.0**opt.lr_log2, 2.0**opt.eps_log2, i + 1
    wd = 0.0 if decay is None else 2.0**decay
    for name, g_int in grads.items():
        g = g_int.double() / ONE / batch
        m = b1 * state["adam_m." + name].double() / ONE / batch + (1 - b1) * g
        v = b2 * state["adam_v." + name].double() / 2**32 + (1 - b2) * g * g
        p = state[name].double() / ONE
        p = p * (1 - lr * wd) - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        assert float((out[name].double() / ONE - p).abs().max()) * ONE <= 2.0
        assert float((out["adam_m." + name].double() / ONE / batch - m).abs().max()) * ONE <= 1
        assert float((out["adam_v." + name].double() / 2**32 - v).abs().max()) * 2**32 <= 1


def test_bound_violation_skips_the_step() -> None:
    spec = _spec()
    state = program.init(spec)
    state["adam_m.layer0.bias"] = torch.full_like(state["layer0.bias"], 2**39)
    after = program.step(spec, state, 0)
    assert int(after["step"]) == 1
    assert all(torch.equal(after[k], state[k]) for k in state if k != "step")


# --- spec and layout ----------------------------------------------------------------------


def test_sgd_spec_hash_unchanged() -> None:
    spec = parse_spec(yaml.safe_load(EXAMPLE_SPEC.read_text()))
    assert spec_hash(spec).hex() == SGD_EXAMPLE_HASH
    assert set(spec.to_dict()["optimizer"]) == {"name", "lr_log2", "momentum"}


def test_adamw_spec_round_trips_and_hashes_every_field() -> None:
    spec = _spec()
    assert spec.to_dict()["optimizer"] == ADAMW
    assert parse_spec(spec.to_dict()) == spec
    base = spec_hash(spec)
    for key, value in [
        ("lr_log2", -5),
        ("beta1", 0.8),
        ("beta2", 0.99),
        ("eps_log2", -10),
        ("weight_decay_log2", None),
    ]:
        assert spec_hash(_spec(**{key: value})) != base, key
    defaults = parse_spec(tiny_spec_dict(optimizer={"name": "adamw", "lr_log2": -6}))
    assert defaults.optimizer.weight_decay_log2 is None


@pytest.mark.parametrize(
    ("optimizer", "field"),
    [
        ({"beta1": 1.0}, "optimizer.beta1"),
        ({"beta2": -0.1}, "optimizer.beta2"),
        ({"beta2": 0.999999}, "optimizer.beta2"),
        ({"beta1": "x"}, "optimizer.beta1"),
        ({"eps_log2": -21}, "optimizer.eps_log2"),
        ({"eps_log2": 1.5}, "optimizer.eps_log2"),
        ({"weight_decay_log2": 1}, "optimizer.weight_decay_log2"),
        ({"lr_log2": -17}, "optimizer.lr_log2"),
        ({"momentum": 0.9}, "optimizer.momentum"),
        ({"name": "adam"}, "optimizer.name"),
    ],
)
def test_invalid_adamw_specs_name_the_field(optimizer: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        _spec(**optimizer)
    assert err.value.field == field


def test_layout_by_optimizer() -> None:
    sgd = parse_spec(tiny_spec_dict())
    adamw = _spec()
    params = [k for k in expected_shapes(sgd) if k.startswith("layer")]
    assert set(expected_shapes(sgd)) == {"step", *params, *("momentum." + p for p in params)}
    assert set(expected_shapes(adamw)) == {
        "step",
        *params,
        *("adam_m." + p for p in params),
        *("adam_v." + p for p in params),
    }
    assert state_blob_size(adamw) > state_blob_size(sgd)
    program.check_state(adamw, program.init(adamw))


# --- determinism, re-execution, protocol --------------------------------------------------


def _train(threads: int, steps: int) -> dict[str, Any]:
    return train_in_subprocess(ADAMW_EXAMPLE, threads, steps)


def test_one_two_and_three_threads_commit_identical_roots() -> None:
    runs = [_train(threads, 200) for threads in (1, 2, 3)]
    assert [r["threads"] for r in runs] == [1, 2, 3]
    assert runs[0]["steps"] == 200
    assert len({r["root"] for r in runs}) == 1
    assert len({r["final_state_hash"] for r in runs}) == 1


def test_reexecuting_a_segment_reproduces_its_leaf() -> None:
    spec = _spec()
    leaves = [program.init(spec)]
    for segment in range(spec.num_segments):
        start = segment * spec.checkpoint_interval
        leaves.append(program.run(spec, leaves[-1], start, start + spec.checkpoint_interval))
    for segment in (0, 3, spec.num_segments - 1):
        start = segment * spec.checkpoint_interval
        again = program.run(spec, dict(leaves[segment]), start, start + spec.checkpoint_interval)
        assert state_hash(again) == state_hash(leaves[segment + 1])
    assert state_hash(leaves[-1]) != state_hash(leaves[0])


def test_example_trains() -> None:
    spec = parse_spec(yaml.safe_load(ADAMW_EXAMPLE.read_text()))
    state = program.run(spec, program.init(spec), 0, spec.steps)
    assert program.evaluate(spec, state) >= 0.95


def test_protocol_honest_adamw_job_is_paid() -> None:
    result = assert_outcome(scenarios.honest(spec={"optimizer": ADAMW}))
    assert result.passed


@pytest.mark.parametrize("step", [0, 13, 31])
def test_protocol_perturbing_cheater_is_slashed_at_the_step(step: int) -> None:
    result = assert_outcome(scenarios.perturb_step(step, spec={"optimizer": ADAMW}))
    assert result.first.located_step == step

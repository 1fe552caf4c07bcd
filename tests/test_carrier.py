"""The carrier's fast paths compute the same integers as the plain formulas they replace."""

from __future__ import annotations

import pytest
import torch

from protocol.errors import OverflowBoundError
from protocol.exact import optim
from protocol.exact.fixedpoint import (
    FRAC,
    STATE_LIMIT,
    ExactMatmul,
    Operand,
    as_int64_,
    check_state_range,
    rshift_round,
)
from protocol.layout import STEP_KEY, momentum_name
from protocol.spec import parse_spec
from tests.conftest import tiny_spec_dict

EXTREMES = [0, 1, -1, 2**52, -(2**52), 2**53 - 1, -(2**53 - 1), 2**40, -(2**40) - 7]


@pytest.mark.parametrize("shape", [(1, 9), (33, 17), (64, 300), (5, 4, 3)])
def test_as_int64_in_place_equals_to(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(len(shape) * 100 + shape[-1])
    x = torch.randint(-(2**53) + 1, 2**53, shape, generator=gen)
    flat = x.view(-1)
    flat[: len(EXTREMES)] = torch.tensor(EXTREMES[: flat.numel()])
    for carried in (x.to(torch.float64), x.to(torch.float64).transpose(-2, -1)):
        expected = carried.to(torch.int64)
        pointer = carried.data_ptr()
        out = as_int64_(carried)
        assert out.data_ptr() == pointer  # over its own storage
        assert torch.equal(out, expected)


def test_check_state_range_returns_exact_maxima_and_raises_at_the_limit() -> None:
    a = torch.tensor([[3, -7], [5, 1]])
    b = torch.tensor([-(STATE_LIMIT - 1), 2])
    assert check_state_range([a, b]) == [7, STATE_LIMIT - 1]
    assert check_state_range([]) == []
    for bad in (STATE_LIMIT, -STATE_LIMIT, -(2**63), 2**63 - 1):
        with pytest.raises(OverflowBoundError):
            check_state_range([a, torch.tensor([0, bad])])


def test_known_maximum_gives_the_same_operand() -> None:
    gen = torch.Generator().manual_seed(5)
    w = torch.randint(-(2**30), 2**30, (40, 24), generator=gen)
    other = w.clone()
    (maximum,) = check_state_range([w])
    matmul = ExactMatmul(known=[(w, maximum)])
    fast, plain = matmul.operand(w), Operand.of(w)
    assert fast.maxabs.dtype == plain.maxabs.dtype == torch.float64
    assert float(fast.maxabs) == float(plain.maxabs)
    assert torch.equal(fast.t64, plain.t64)
    # A tensor it was not told about (even an equal one) is scanned.
    assert float(matmul.operand(other).maxabs) == float(plain.maxabs)
    x = torch.randint(-(2**16), 2**16, (3, 40), generator=gen)
    assert torch.equal(matmul(x, w, "t"), x @ w)


def _plain_sgd(spec, state, grads):  # type: ignore[no-untyped-def]
    """The update as first written: the reference for the fused passes."""
    mu = spec.optimizer.momentum_q16
    shift = spec.loss_terms_log2 - spec.optimizer.lr_log2
    out = {STEP_KEY: state[STEP_KEY] + 1}
    for name, g in grads.items():
        v = rshift_round(state[momentum_name(name)] * mu, FRAC) + g
        out[momentum_name(name)] = v
        out[name] = state[name] - rshift_round(v, shift)
    return out


@pytest.mark.parametrize("lr_log2", [-3, -9, 0])
def test_sgd_update_equals_the_plain_formula(lr_log2: int) -> None:
    spec = parse_spec(
        tiny_spec_dict(optimizer={"name": "sgd", "lr_log2": lr_log2, "momentum": 0.9})
    )
    gen = torch.Generator().manual_seed(-lr_log2)
    names = ["w", "b"]
    state = {STEP_KEY: torch.tensor(4)}
    grads = {}
    for name, shape in zip(names, [(16, 16), (16,)], strict=True):
        state[name] = torch.randint(-(2**40) + 1, 2**40, shape, generator=gen)
        state[momentum_name(name)] = torch.randint(-(2**40) + 1, 2**40, shape, generator=gen)
        grads[name] = torch.randint(-(2**47), 2**47, shape, generator=gen)
    state["w"].view(-1)[:4] = torch.tensor([2**40 - 1, -(2**40) + 1, 0, -1])
    before = {k: v.clone() for k, v in state.items()}
    got = optim.sgd_update(spec, state, grads)
    want = _plain_sgd(spec, before, grads)
    assert set(got) == set(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    for key in before:  # pure: the input state is untouched
        assert torch.equal(state[key], before[key]), key

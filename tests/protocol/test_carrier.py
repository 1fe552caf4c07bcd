"""The carrier's fast paths compute the same integers as the plain formulas they replace."""

from __future__ import annotations

import math

import pytest
import torch

from protocol.errors import OverflowBoundError
from protocol.exact import optim
from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    STATE_LIMIT,
    ExactMatmul,
    Operand,
    as_int64_,
    check_state_range,
    div_round,
    float_maxabs,
    isqrt_int64,
    max_abs,
    rshift_round,
    scale_round,
)
from protocol.layout import STEP_KEY, adam_m_name, adam_v_name, momentum_name
from protocol.spec import JobSpec, parse_spec
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


def _plain_sgd(
    spec: JobSpec, state: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
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


def test_max_abs_is_the_true_largest_magnitude() -> None:
    gen = torch.Generator().manual_seed(9)
    tensors = [
        torch.randint(-(2**50), 2**50, (7, 5), generator=gen),
        torch.tensor([], dtype=torch.int64),
        torch.tensor([-(2**63), 5, -9]),  # int64 abs would wrap -2^63 to itself
        torch.tensor([3]),
    ]
    for chosen in ([], [tensors[1]], tensors, tensors[2:], tensors[:1], [tensors[2]]):
        true = max((abs(v) for t in chosen for v in t.flatten().tolist()), default=0)
        assert max_abs(chosen) == true


def _plain_adamw(
    spec: JobSpec, state: dict[str, torch.Tensor], i: int, grads: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The AdamW update as first written (before the passes were fused): the reference."""
    opt = spec.optimizer
    b1, b2 = opt.beta1_q16, opt.beta2_q16
    k1, k2 = optim.adamw_scalars(spec, i)
    b = spec.loss_terms_log2
    out = {STEP_KEY: state[STEP_KEY] + 1}
    for name, g in grads.items():
        m = state[adam_m_name(name)] * b1
        m += g * (ONE - b1)
        m = rshift_round(m, FRAC)
        g2 = rshift_round(g * g, 2 * b + 2 * FRAC - optim.ADAM_V_FRAC)
        g2 *= ONE - b2
        v = state[adam_v_name(name)] * b2
        v += g2
        v = rshift_round(v, FRAC)
        shift = 2 * optim.ADAM_SQRT_FRAC - optim.ADAM_V_FRAC
        root = isqrt_reference(torch.clamp(v, min=0) << shift)
        den = rshift_round(root * k2, FRAC) + (1 << (opt.eps_log2 + optim.ADAM_SQRT_FRAC))
        den <<= b
        numerator = rshift_round(m * k1, FRAC) << (optim.ADAM_SQRT_FRAC + opt.lr_log2)
        weight = state[name]
        if opt.weight_decay_log2 is not None:
            weight = weight - rshift_round(weight, -(opt.lr_log2 + opt.weight_decay_log2))
        out[name] = weight - div_round(numerator, den)
        out[adam_m_name(name)] = m
        out[adam_v_name(name)] = v
    return out


def isqrt_reference(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor([math.isqrt(int(v)) for v in x.reshape(-1).tolist()]).reshape(x.shape)


SMALL = [("w", (16, 16)), ("b", (16,))]
MIXED = [("w", (256, 256)), ("b", (256,)), ("w2", (256, 3)), ("b2", (3,))]  # one alone


@pytest.mark.parametrize(
    ("decay", "lr_log2", "shapes", "m_bits", "float_division"),
    [
        (None, -6, SMALL, 20, True),
        (-4, -6, SMALL, 20, True),
        (-10, -6, MIXED, 20, True),
        (0, 0, SMALL, 20, True),
        (None, -3, MIXED, 20, True),
        (None, 0, SMALL, 31, False),  # 4 max|a| reaches 2^52: the int64 division
        (-4, 0, MIXED, 31, False),
    ],
)
def test_adamw_update_equals_the_plain_formula(
    decay: int | None,
    lr_log2: int,
    shapes: list[tuple[str, tuple[int, ...]]],
    m_bits: int,
    float_division: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fits = optim._float_division_fits
    taken: list[bool] = []

    def recorded(*args: int) -> bool:
        taken.append(fits(*args))
        return taken[-1]

    monkeypatch.setattr(optim, "_float_division_fits", recorded)
    optimizer = {"name": "adamw", "lr_log2": lr_log2, "beta1": 0.9, "beta2": 0.99}
    if decay is not None:
        optimizer["weight_decay_log2"] = decay
    spec = parse_spec(tiny_spec_dict(optimizer=optimizer))
    gen = torch.Generator().manual_seed(abs(decay or 1))
    state = {STEP_KEY: torch.tensor(2)}
    grads = {}
    for name, shape in shapes:
        state[name] = torch.randint(-(2**40) + 1, 2**40, shape, generator=gen)
        state[adam_m_name(name)] = torch.randint(-(2**m_bits), 2**m_bits, shape, generator=gen)
        state[adam_v_name(name)] = torch.randint(-(2**10), 2**36, shape, generator=gen)
        grads[name] = torch.randint(-(2**22), 2**22, shape, generator=gen)
    before = {k: v.clone() for k, v in state.items()}
    for i in (0, 1, 40):
        got = optim.adamw_update(spec, state, i, grads)
        want = _plain_adamw(spec, before, i, grads)
        assert set(got) == set(want)
        for key in want:
            assert torch.equal(got[key], want[key]), (i, key)
    for key in before:
        assert torch.equal(state[key], before[key]), key
    assert taken == [float_division] * 3


@pytest.mark.parametrize("bits", [4, 20, 40, 62])
def test_isqrt_int64_is_exact(bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    x = torch.randint(0, 2**bits, (4000,), generator=gen)
    roots = torch.randint(0, 2 ** (bits // 2), (1000,), generator=gen)
    x = torch.cat([x, roots * roots, roots * roots + 1, (roots * roots - 1).clamp(min=0)])
    assert torch.equal(isqrt_int64(x), isqrt_reference(x))


@pytest.mark.parametrize("bits", [4, 20, 40, 48, 50])
def test_isqrt_int64_below_2_50_is_exact(bits: int) -> None:
    """The one-correction path (x < below <= 2^50) against math.isqrt, at and around squares."""
    gen = torch.Generator().manual_seed(bits)
    x = torch.randint(0, 2**bits, (4000,), generator=gen)
    roots = torch.randint(0, 2 ** (bits // 2), (1000,), generator=gen)
    top = torch.tensor([2**bits - 1, 2 ** (bits // 2) - 1, 0, 1, 2, 3])
    x = torch.cat([x, roots * roots, roots * roots + 1, (roots * roots - 1).clamp(min=0), top])
    assert torch.equal(isqrt_int64(x, below=1 << bits), isqrt_reference(x))


@pytest.mark.parametrize(
    ("k2", "num_shift", "eps", "b"), [(10 << 16, 12, 1 << 8, 9), (ONE, 14, 1, 0)]
)
def test_float_quotient_equals_div_round(k2: int, num_shift: int, eps: int, b: int) -> None:
    """AdamW's float64 root, den and division against the int64 formula, with v at squares
    (x = v 2^8 then a square), one off, 0, negative and at the top (2^40 - 1)."""
    gen = torch.Generator().manual_seed(k2 + num_shift)
    roots = torch.randint(0, 2**20, (3000,), generator=gen)
    v = torch.cat(
        [
            roots * roots,
            roots * roots - 1,
            roots * roots + 1,
            torch.randint(-(2**10), 2**40, (3000,), generator=gen),
            torch.tensor([0, -1, 2**40 - 1, 1, 2**40 - 2]),
        ]
    )
    mh = torch.randint(-(2**30), 2**30, v.shape, generator=gen)
    mh[:5] = torch.tensor([0, -(2**30), 2**30 - 1, -1, 1])
    assert optim._float_division_fits(2**30, ONE, k2, num_shift, eps, b)
    root = isqrt_reference(torch.clamp(v, min=0) << 8)
    den = (rshift_round(root * k2, FRAC) + eps) << b
    want = div_round(mh << num_shift, den)
    got = optim._float_quotient(mh.clone(), v, k2, num_shift, eps, b)
    assert got.dtype == torch.int64
    assert torch.equal(got, want)


@pytest.mark.parametrize("c", [1, 111542, 94548, 11585, -3])
def test_scale_round_equals_rshift_round_of_the_product(c: int) -> None:
    gen = torch.Generator().manual_seed(abs(c))
    x = torch.randint(-(2**40), 2**40, (3, 700), generator=gen)
    x[0, :4] = torch.tensor([0, -(1 << 15), (1 << 15) - 1, -1])
    want = rshift_round(x * c, FRAC)
    assert torch.equal(scale_round(x, c, FRAC), want)
    y = x.clone()
    assert scale_round(y, c, FRAC, out=y).data_ptr() == y.data_ptr()
    assert torch.equal(y, want)


@pytest.mark.parametrize("n", [1, 100, 8191, 8192, 40000])
def test_float_maxabs_is_abs_amax(n: int) -> None:
    """Both branches (aminmax below 8,192 elements; amin and amax from there) against
    abs().amax(), with the extreme at the negative end, the positive end and both."""
    gen = torch.Generator().manual_seed(n)
    base = torch.randint(-(2**52), 2**52, (n,), generator=gen).to(torch.float64)
    for low, high in ((-(2.0**52), 5.0), (-3.0, 2.0**52), (-(2.0**52), 2.0**52)):
        t = base.clone()
        t[0], t[-1] = low, high
        got = float_maxabs(t)
        assert got.dtype == torch.float64 and got.dim() == 0
        assert float(got) == float(t.abs().amax())

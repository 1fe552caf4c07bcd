"""The transformer's exact operators against their float64 references, and their bounds.

Each operator's forward and hand-written backward must agree with float64 autograd of the same
Q16 values within the tolerance its docstring states, and a bound violation must raise
``OverflowBoundError`` (never wrap).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import OverflowBoundError
from protocol.exact.fixedpoint import (
    LOG2E_Q16,
    ONE,
    ExactMatmul,
    Operand,
    div_round,
    exp2_fixed,
    isqrt_int64,
    max_abs,
    maxabs,
    rshift_round,
    softmax_fixed,
)
from protocol.exact.ops.activations import (
    GELU_A_Q16,
    gelu_backward,
    gelu_forward,
    gelu_reference,
    gelu_slope_fixed,
    relu_backward,
    relu_forward,
    relu_reference,
    sigmoid_fixed,
    sigmoid_lookup,
)
from protocol.exact.ops.attention import (
    attention_backward,
    attention_forward,
    attention_reference,
    attention_scale,
    causal_mask,
    exp2_lookup,
    exp2_softmax_,
    head_operands,
    operand,
    softmax_backward,
    softmax_lastdim,
    softmax_reference,
)
from protocol.exact.ops.embedding import (
    embedding_backward,
    embedding_forward,
    embedding_reference,
)
from protocol.exact.ops.loss import (
    cross_entropy_backward,
    cross_entropy_forward,
    cross_entropy_loss,
    cross_entropy_reference,
)
from protocol.exact.ops.norm import (
    RmsNormSaved,
    _div_round_by,
    _div_round_rows,
    floor_div_odd,
    rms_norm_backward,
    rms_norm_forward,
    rms_norm_reference,
)

SETTINGS = settings(max_examples=25, deadline=None)
ULP = 1.0 / ONE


def q16(gen: torch.Generator, shape: tuple[int, ...], scale: float) -> torch.Tensor:
    """Random Q16 integers, normal with std ``scale`` (real units)."""
    return torch.round(torch.randn(shape, generator=gen, dtype=torch.float64) * scale * ONE).long()


def real(t: torch.Tensor) -> torch.Tensor:
    """The real value of a Q16 tensor, as a float64 leaf that records gradients."""
    return (t.to(torch.float64) / ONE).requires_grad_(True)


def as_real(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64) / ONE


# --- relu, gelu ----------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(1, 64), scale=st.sampled_from([0.1, 1.0, 8.0]))
def test_relu_exact(seed: int, n: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    x, g = q16(gen, (n,), scale), q16(gen, (n,), 1.0)
    y, saved = relu_forward(x)
    xr = real(x)
    ref = relu_reference(xr)
    torch.autograd.backward(ref, as_real(g))
    assert torch.equal(as_real(y), ref.detach())
    (dx,) = relu_backward(saved, g)
    assert xr.grad is not None
    assert torch.equal(as_real(dx), xr.grad)


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(1, 256), scale=st.sampled_from([0.1, 1.0, 8.0]))
def test_gelu_within_tolerance(seed: int, n: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    x, g = q16(gen, (n,), scale), q16(gen, (n,), 1.0)
    y, saved = gelu_forward(x)
    xr = real(x)
    ref = gelu_reference(xr)
    torch.autograd.backward(ref, as_real(g))
    err = (as_real(y) - ref.detach()).abs()
    assert bool((err <= 1e-4 * xr.detach().abs() + 2 * ULP).all()), float(err.max())
    (dx,) = gelu_backward(saved, g)
    assert xr.grad is not None
    err = (as_real(dx) - xr.grad).abs()
    bound = 3e-4 * (1 + xr.detach().abs()) * as_real(g).abs() + 2 * ULP
    assert bool((err <= bound).all()), float((err - bound).max())


def test_lookup_tables_equal_their_formulas_everywhere() -> None:
    u = torch.arange(-14 * ONE, 14 * ONE + 1)
    assert torch.equal(sigmoid_lookup(u), sigmoid_fixed(u))
    far = torch.tensor([-(1 << 45), -(40 * ONE), 40 * ONE, (1 << 45)])
    assert torch.equal(sigmoid_lookup(far), sigmoid_fixed(far))
    t = torch.arange(-20 * ONE, 1)
    assert torch.equal(exp2_lookup(t), exp2_fixed(t))
    assert torch.equal(exp2_lookup(torch.tensor([-(1 << 40)])), torch.tensor([0]))
    t = torch.arange(-47 * ONE, 1)  # every exponent the softmax can pass
    assert torch.equal(exp2_softmax_(t.clone()), exp2_fixed(t))


def test_gelu_tables_equal_the_plain_formulas() -> None:
    """gelu_forward / gelu_backward (a table, in-place steps) against the plain formulas: y =
    rshift_round(x s, 16), dx = rshift_round(g d) with s = sigmoid_fixed(rshift_round(x A, 16))
    and d = gelu_slope_fixed(u), over every u in and around the table's span and at the
    input limit."""
    x = torch.cat(
        [
            torch.arange(-16 * ONE, 16 * ONE, 3),
            torch.tensor([(1 << 44) - 1, -(1 << 44) + 1, 1 << 40, -(1 << 40), 0, 1, -1]),
        ]
    )
    g = torch.randint(-(1 << 41), 1 << 41, x.shape, generator=torch.Generator().manual_seed(3))
    u = (x * GELU_A_Q16 + (1 << 15)) >> 16
    s = sigmoid_fixed(u)
    y, saved = gelu_forward(x)
    assert torch.equal(y, (x * s + (1 << 15)) >> 16)
    assert torch.equal(saved.s, s) and torch.equal(saved.u, u)
    (dx,) = gelu_backward(saved, g)
    assert torch.equal(dx, (g * gelu_slope_fixed(u) + (1 << 15)) >> 16)
    y2, saved2 = gelu_forward(x, max_abs=(1 << 44) - 1)
    assert torch.equal(y2, y) and torch.equal(gelu_backward(saved2, g, max_abs=1 << 41)[0], dx)


def test_sigmoid_is_symmetric_and_saturates() -> None:
    u = torch.arange(-40 * ONE, 40 * ONE, 997)
    s = sigmoid_fixed(u)
    assert torch.equal(s + sigmoid_fixed(-u), torch.full_like(s, ONE))
    assert int(s.min()) >= 0 and int(s.max()) <= ONE
    assert int(sigmoid_fixed(torch.tensor([13 * ONE]))) == ONE


def test_gelu_refuses_out_of_range() -> None:
    with pytest.raises(OverflowBoundError):
        gelu_forward(torch.tensor([1 << 44]))
    with pytest.raises(OverflowBoundError):
        gelu_forward(torch.tensor([-(1 << 44)]))
    with pytest.raises(OverflowBoundError):  # a caller's bound is checked like the scan
        gelu_forward(torch.tensor([ONE]), max_abs=1 << 44)
    _, saved = gelu_forward(torch.tensor([ONE, -ONE]))
    with pytest.raises(OverflowBoundError):
        gelu_backward(saved, torch.tensor([1 << 42, 0]))
    with pytest.raises(OverflowBoundError):
        gelu_backward(saved, torch.tensor([1, 0]), max_abs=1 << 42)


# --- rms norm ------------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    rows=st.integers(1, 6),
    d=st.sampled_from([4, 16, 64, 96]),
    scale=st.sampled_from([0.05, 1.0, 30.0]),
)
def test_rms_norm_within_tolerance(seed: int, rows: int, d: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = q16(gen, (rows, d), scale)
    gain = q16(gen, (d,), 0.3) + ONE
    dy = q16(gen, (rows, d), 1.0)
    y, saved = rms_norm_forward(x, gain)
    xr, gr = real(x), real(gain)
    ref = rms_norm_reference(xr, gr)
    torch.autograd.backward(ref, as_real(dy))
    rms = torch.sqrt((as_real(x) ** 2).mean(dim=-1, keepdim=True) + 2.0**-16)
    rel = 2.0**-20 / rms  # the relative error of r's floor (r is Q20)
    err = (as_real(y) - ref.detach()).abs()
    assert bool((err <= 2 * rel * ref.detach().abs() + 4 * ULP).all()), float(err.max())
    dx, dgain = rms_norm_backward(saved, dy)
    assert xr.grad is not None and gr.grad is not None
    # dx = (dn - n c) / r: r's relative error (twice: in n and in the division) times the
    # row's gradient scale, and a few ulp of the numerator amplified by 1 / rms
    err = (as_real(dx) - xr.grad).abs()
    bound = 4 * rel * xr.grad.abs().amax(dim=-1, keepdim=True) + 4 * ULP / rms + 2 * ULP
    assert bool((err <= bound).all()), float((err - bound).max())
    err = (as_real(dgain) - gr.grad).abs()
    bound = 2 * float(rel.max()) * gr.grad.abs() + rows * 2 * ULP
    assert bool((err <= bound).all()), float(err.max())


def test_rms_norm_refuses_out_of_range() -> None:
    d = 8
    gain = torch.full((d,), ONE)
    with pytest.raises(OverflowBoundError):
        rms_norm_forward(torch.full((1, d), 1 << 27), gain)
    with pytest.raises(OverflowBoundError):  # the gain times the normalized input
        rms_norm_forward(torch.full((1, d), ONE), torch.full((d,), 1 << 47))
    _, saved = rms_norm_forward(torch.arange(d).reshape(1, d) * ONE, gain)
    with pytest.raises(OverflowBoundError):
        rms_norm_backward(saved, torch.full((1, d), 1 << 46))


def test_rms_norm_near_limit_does_not_wrap() -> None:
    d = 64
    x = torch.full((2, d), (1 << 27) - 1)
    x[1] = -x[1]
    y, saved = rms_norm_forward(x, torch.full((d,), ONE))
    assert torch.equal(y, torch.sign(x) * ONE)
    dx, _ = rms_norm_backward(saved, torch.ones_like(x) * ONE)
    assert bool((dx.abs() <= 1).all())  # the gradient of a constant row along itself is 0


# --- attention -----------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    batch=st.integers(1, 2),
    heads=st.integers(1, 3),
    t=st.integers(1, 12),
    dh=st.sampled_from([4, 16]),
    scale=st.sampled_from([0.3, 1.0, 3.0]),
)
def test_attention_within_tolerance(
    seed: int, batch: int, heads: int, t: int, dh: int, scale: float
) -> None:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, heads, t, dh)
    q, k, v, g = (q16(gen, shape, s) for s in (scale, scale, 1.0, 1.0))
    matmul = ExactMatmul()
    out, saved = attention_forward(matmul, q, k, v, "test")
    qr, kr, vr = real(q), real(k), real(v)
    ref = attention_reference(qr, kr, vr)
    torch.autograd.backward(ref, as_real(g))
    v_max = float(as_real(v).abs().max())
    err = float((as_real(out) - ref.detach()).abs().max())
    assert err <= 4e-4 * v_max * t + 2 * ULP, err
    dq, dk, dv = attention_backward(matmul, saved, g, "test")
    g_max = float(as_real(g).abs().max())
    for name, ours, leaf in (("dq", dq, qr), ("dk", dk, kr), ("dv", dv, vr)):
        assert leaf.grad is not None
        err = float((as_real(ours) - leaf.grad).abs().max())
        bound = 1e-3 * (1 + scale * scale) * g_max * v_max * t + 2e-3 * g_max * t + 4 * ULP * t
        assert err <= bound, (name, err, bound)


def test_attention_probabilities_are_causal() -> None:
    gen = torch.Generator().manual_seed(1)
    q, k, v = (q16(gen, (1, 2, 6, 4), 1.0) for _ in range(3))
    _, saved = attention_forward(ExactMatmul(), q, k, v, "test")
    p = saved.p.t64.to(torch.int64)
    assert bool((p.masked_select(~causal_mask(6, p.device)) == 0).all())
    assert int(p[..., 0, 0].min()) == ONE  # the first query sees only itself
    assert bool((p.sum(dim=-1) <= ONE).all())


def test_softmax_lastdim_matches_house_softmax_and_reference() -> None:
    gen = torch.Generator().manual_seed(2)
    x = q16(gen, (9, 17), 4.0)
    assert torch.equal(softmax_lastdim(x), softmax_fixed(x))
    mask = torch.rand(9, 17, generator=gen) > 0.3
    mask[:, 0] = True
    p = softmax_lastdim(x, mask)
    ref = softmax_reference(as_real(x), mask)
    assert float((as_real(p) - ref).abs().max()) <= 4e-4
    huge = torch.tensor([[(1 << 60), -(1 << 60), 0]])
    assert torch.equal(softmax_lastdim(huge), torch.tensor([[ONE, 0, 0]]))
    with pytest.raises(OverflowBoundError):
        softmax_lastdim(torch.tensor([[1 << 61, 0]]))


def test_attention_refuses_out_of_range() -> None:
    big = torch.full((1, 1, 4, 16), 1 << 25)
    small = torch.full((1, 1, 4, 16), ONE)
    with pytest.raises(OverflowBoundError):
        attention_forward(ExactMatmul(), big, big, small, "test")
    _, saved = attention_forward(ExactMatmul(), small, small, small, "test")
    with pytest.raises(OverflowBoundError):
        attention_backward(ExactMatmul(), saved, torch.full((1, 1, 4, 16), 1 << 36), "test")
    p = torch.tensor([[ONE // 2, ONE // 2]])
    with pytest.raises(OverflowBoundError):
        softmax_backward(p, torch.tensor([[1 << 44, 0]]))
    assert torch.equal(
        softmax_backward(p, torch.tensor([[(1 << 44) - 1, 0]])).abs(), torch.full((1, 2), 1 << 42)
    )


def test_attention_scale_is_rounded_half_up() -> None:
    for dh in range(1, 200):
        assert attention_scale(dh) == math.floor(ONE / math.sqrt(dh) + 0.5)


# --- embedding -----------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**31), vocab=st.integers(1, 20), n=st.integers(1, 40))
def test_embedding_exact(seed: int, vocab: int, n: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    table = q16(gen, (vocab, 8), 1.0)
    ids = torch.randint(0, vocab, (2, n), generator=gen)
    g = q16(gen, (2, n, 8), 1.0)
    y, saved = embedding_forward(table, ids)
    tr = real(table)
    ref = embedding_reference(tr, ids)
    torch.autograd.backward(ref, as_real(g))
    assert torch.equal(as_real(y), ref.detach())
    (grad,) = embedding_backward(saved, g)
    assert tr.grad is not None
    assert torch.equal(as_real(grad), tr.grad)


def test_embedding_refuses_out_of_range() -> None:
    _, saved = embedding_forward(
        torch.zeros(3, 2, dtype=torch.int64), torch.zeros(4, dtype=torch.int64)
    )
    with pytest.raises(OverflowBoundError):
        embedding_backward(saved, torch.full((4, 2), 1 << 60))


# --- cross-entropy -------------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 16),
    vocab=st.integers(2, 70),
    scale=st.sampled_from([0.5, 3.0, 20.0]),
)
def test_cross_entropy_within_tolerance(seed: int, n: int, vocab: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = q16(gen, (n, vocab), scale)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    _, saved = cross_entropy_forward(logits, targets)
    (grad,) = cross_entropy_backward(saved)
    zr = real(logits)
    ref = cross_entropy_reference(zr, targets)
    torch.autograd.backward(ref)
    assert zr.grad is not None
    assert float((as_real(grad) - zr.grad).abs().max()) <= 4e-4
    assert math.isclose(cross_entropy_loss(logits, targets), float(ref.detach()) / n, rel_tol=1e-12)


def test_cross_entropy_refuses_out_of_range() -> None:
    with pytest.raises(OverflowBoundError):
        cross_entropy_forward(torch.tensor([[1 << 61, 0]]), torch.tensor([0]))


# --- the fast paths against the plain formulas they replace ----------------------------------


def _softmax_plain(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    filled = x if mask is None else x.masked_fill(~mask, -(1 << 61))
    z = torch.clamp(filled - filled.amax(dim=-1, keepdim=True), min=-32 * ONE)
    exps = exp2_fixed(rshift_round(z * LOG2E_Q16, 16))
    if mask is not None:
        exps = exps.masked_fill(~mask, 0)
    return torch.div(exps << 16, exps.sum(dim=-1, keepdim=True), rounding_mode="floor")


def test_softmax_in_place_equals_the_plain_formula() -> None:
    gen = torch.Generator().manual_seed(5)
    x = q16(gen, (3, 2, 8, 8), 6.0)
    x[0, 0, 3] = -(1 << 60)  # a row far below the clamp
    mask = causal_mask(8, x.device)
    near = x.clone()
    near[1, 1, 5, :6] = -(1 << 61) + 5  # a row whose max is within 32 of the fill value:
    for xs in (x, near):  # the masked exps are not 0 by themselves and must be filled
        for m in (None, mask):
            want = _softmax_plain(xs, m)
            assert torch.equal(softmax_lastdim(xs, m), want)
            assert torch.equal(softmax_lastdim(xs.clone(), m, inplace=True), want)
    p = softmax_lastdim(x, mask)
    dp = q16(gen, p.shape, 3.0)
    row = rshift_round((dp * p).sum(dim=-1, keepdim=True), 16)
    assert torch.equal(softmax_backward(p, dp.clone()), rshift_round(p * (dp - row), 16))


def test_attention_operands_equal_operand_of() -> None:
    gen = torch.Generator().manual_seed(6)
    b, t, heads, dh = 2, 5, 3, 4
    qkv = q16(gen, (b, t, 3 * heads * dh), 2.0)
    ops = head_operands(qkv, heads)
    for j, op in enumerate(ops):
        part = qkv[..., j * heads * dh : (j + 1) * heads * dh]
        want = Operand.of(part.reshape(b, t, heads, dh).transpose(1, 2))
        assert torch.equal(op.t64, want.t64) and torch.equal(op.maxabs, want.maxabs)
        assert op.t64.is_contiguous()
    for t_ in (qkv, -qkv.abs(), qkv.abs()):
        assert torch.equal(operand(t_).maxabs, Operand.of(t_).maxabs)
    q, k, v = (op.t64.to(torch.int64) for op in ops)
    out_t, saved_t = attention_forward(ExactMatmul(), q, k, v, "t")
    out_o, saved_o = attention_forward(ExactMatmul(), *ops, "t")
    assert torch.equal(out_t, out_o) and torch.equal(saved_t.p_int, saved_o.p_int)


def _rms_plain(x: torch.Tensor, gain: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The rms norm's formulas (module docstring), step by step with div_round."""
    d = x.shape[-1]
    total = (x * x).sum(dim=-1, keepdim=True)
    r = isqrt_int64((div_round(total, torch.full_like(total, d)) + (1 << 16)) << 8)
    n = div_round(x << 20, r)
    y = rshift_round(n * gain, 16)
    grad_gain = rshift_round((g * n).reshape(-1, d).sum(dim=0), 16)
    dn = rshift_round(g * gain, 16)
    dot = (dn * n).sum(dim=-1, keepdim=True)
    c = div_round(dot, torch.full_like(dot, d << 16))
    grad_x = div_round(((dn << 16) - n * c) << 4, r)
    return y, grad_x, grad_gain


@pytest.mark.parametrize("d", [1, 3, 16, 48, 64])
def test_rms_norm_equals_the_plain_formulas(d: int) -> None:
    gen = torch.Generator().manual_seed(d)
    x, g = q16(gen, (4, 7, d), 3.0), q16(gen, (4, 7, d), 5.0)
    gain = q16(gen, (d,), 1.5)
    y, saved = rms_norm_forward(x, gain)
    grad_x, grad_gain = rms_norm_backward(saved, g)
    want = _rms_plain(x, gain, g)
    assert torch.equal(y, want[0])
    assert torch.equal(grad_x, want[1]) and torch.equal(grad_gain, want[2])
    bare = RmsNormSaved(saved.n, saved.r, saved.gain)  # maxima not recorded: scanned
    assert torch.equal(rms_norm_backward(bare, g)[0], want[1])
    a = torch.arange(-(1 << 20), 1 << 20, 997)
    assert torch.equal(_div_round_by(a, d), div_round(a, torch.full_like(a, d)))


def test_cross_entropy_in_place_equals_out_of_place() -> None:
    gen = torch.Generator().manual_seed(7)
    z, y = q16(gen, (6, 11), 3.0), torch.randint(0, 11, (6,), generator=gen)
    p, saved = cross_entropy_forward(z, y)
    (grad,) = cross_entropy_backward(saved)
    p2, saved2 = cross_entropy_forward(z.clone(), y, inplace=True)
    assert torch.equal(p2, p)
    assert torch.equal(cross_entropy_backward(saved2, inplace=True)[0], grad)


def test_float_floor_division_equals_div_round() -> None:
    """_div_round_rows (float64 below its limit, int64 above) against div_round, with exact
    quotients, quotients just off an integer and random ones, up to the limits."""
    gen = torch.Generator().manual_seed(8)
    r = torch.randint(1, 1 << 31, (64, 1), generator=gen)
    r[:4, 0] = torch.tensor([1, 2, 3, (1 << 31) - 1])
    for a_max in (1 << 10, 1 << 30, (1 << 49) - 1, 1 << 55):
        a = torch.randint(-a_max, a_max, (64, 50), generator=gen)
        q = torch.randint(-(a_max // (1 << 31)) - 2, a_max // (1 << 31) + 2, (64, 10))
        edges = torch.cat([q * r + off for off in (-1, 0, 1)] + [(2 * q + 1) * r // 2], dim=1)
        a = torch.cat([a, edges.clamp(-a_max, a_max)], dim=1)
        want = div_round(a, r.expand_as(a))
        assert torch.equal(_div_round_rows(a << 2, (a_max << 2), r), want)
    m = torch.tensor(
        [1.0, -1.0, 3.0, float((1 << 52) - 1), -float((1 << 52) - 1)], dtype=torch.float64
    )
    den = torch.tensor([2.0, 2.0, 6.0, 2.0, float(1 << 40)], dtype=torch.float64)
    want = torch.div(((m - 1) / 2).long(), (den / 2).long(), rounding_mode="floor")
    assert torch.equal(floor_div_odd(m.clone(), den), want)


def test_maxabs_of_one_tensor_equals_max_abs_of_many() -> None:
    cases = [
        torch.tensor([3, -7, 5]),
        torch.tensor([-(1 << 63), 1]),
        torch.tensor([(1 << 63) - 1]),
        torch.zeros(0, dtype=torch.int64),
        torch.randint(-(1 << 40), 1 << 40, (9, 13), generator=torch.Generator().manual_seed(9)),
    ]
    for t in cases:
        assert maxabs(t) == max_abs([t]) == max((abs(v) for v in t.flatten().tolist()), default=0)
    assert maxabs(torch.tensor([-(1 << 63)])) == 1 << 63

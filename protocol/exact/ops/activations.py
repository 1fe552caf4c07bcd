"""Activations on Q16 int64 tensors: ReLU and an integer GELU.

Run-time bounds use ``maxabs`` and ``require_below`` from ``protocol.exact.fixedpoint``.

relu
    y = max(x, 0); dx = g * [x > 0]. No rounding, no product: nothing can wrap.

gelu  (the sigmoid form, "QuickGELU":  gelu(x) ~= x * sigmoid(1.702 x))
    Math, with a = 1.702 and s(u) = 1 / (1 + e^-u):

        y  = x * s(a x)
        dy/dx = s(a x) + a x * s(a x) * (1 - s(a x))      (the exact derivative of that form)

    Integers (Q16; A = round(1.702 * 2^16) = 111542; LOG2E = round(log2(e) * 2^16)):

        u   = rshift_round(x * A, 16)                              a x
        t   = rshift_round(-min(|u|, 32) * LOG2E, 16)              -|a x| log2(e)  (<= 0)
        e   = exp2_fixed(t)                                        e^-|ax| in [0, 1]
        sp  = div_round(2^32, 2^16 + e)                            s(|ax|) in [1/2, 1]
        s   = sp if u >= 0 else 2^16 - sp                          s(-v) = 1 - s(v) exactly
        y   = rshift_round(x * s, 16)
        s1  = rshift_round(s * (2^16 - s), 16)                     s (1 - s), <= 2^14
        d   = s + rshift_round(u * s1, 16)                         dy/dx
        dx  = rshift_round(g * d, 16)

    Rounding: one ``rshift_round`` per product, one ``div_round`` (half up) for the sigmoid's
    division, ``exp2_fixed``'s own (its polynomial) for 2^t.

    Speed: sp depends on |u| alone and is exactly 2^16 from |u| = 12 on, so the forward reads
    it from a table of the formula's own values over 0..12 * 2^16 (``sigmoid_lookup``, built
    once per device by the formula itself, kept as int16 offsets): the same integers, one
    gather instead of ~20 elementwise passes.

    Bound: |x| < 2^44 is checked (``OverflowBoundError`` otherwise), so |x A| < 2^61 and
    |x s| < 2^60; min(|u|, 32) * LOG2E < 2^39; 2 * 2^32 + 2^17 for div_round. The clamp at 32
    changes nothing: e^-32 is far below Q16's ulp, so e = 0 for every |u| >= 12 already.
    Backward: s1 > 0 needs 0 < s < 2^16, hence e >= 1, hence |u| < 12 * 2^16, so
    |u * s1| < 2^38 and |d| < 2^16 + 2^19 < 2^20; |g| < 2^42 is checked, so |g d| < 2^62.

    Tolerance vs ``gelu_reference`` (float64 x * sigmoid(1.702 x) of the same Q16 input):
    exp2_fixed's relative error (2.4e-4) moves s by at most 6e-5; with the roundings,
    |y - ref| <= 1e-4 |x| + 2 ulp and |dx - ref| <= (3e-4 (1 + |x|)) |g| + 2 ulp (ulp = 2^-16).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from protocol.exact.fixedpoint import (
    FRAC,
    LOG2E_Q16,
    ONE,
    div_round,
    exp2_fixed,
    maxabs,
    require_below,
    rshift_round,
    rshift_round_,
    scale_round,
)

GELU_A_Q16 = 111542  # round(1.702 * 2^16)
GELU_INPUT_LIMIT = 1 << 44
GELU_GRAD_LIMIT = 1 << 42
_U_CLAMP = 32 * ONE


# --- relu ----------------------------------------------------------------------------------


class ReluSaved(NamedTuple):
    positive: torch.Tensor  # bool mask x > 0


def relu_forward(x: torch.Tensor) -> tuple[torch.Tensor, ReluSaved]:
    """y = max(x, 0) (exact)."""
    return torch.clamp(x, min=0), ReluSaved(x > 0)


def relu_backward(saved: ReluSaved, grad_y: torch.Tensor) -> tuple[torch.Tensor]:
    """dx = g * [x > 0] (exact)."""
    return (grad_y * saved.positive,)


def relu_reference(x: torch.Tensor) -> torch.Tensor:
    """float64 ReLU of real-valued ``x`` (references take and return real units)."""
    return torch.relu(x)


# --- gelu ----------------------------------------------------------------------------------


class GeluSaved(NamedTuple):
    s: torch.Tensor  # sigmoid(a x), Q16
    u: torch.Tensor  # a x, Q16


def _sigmoid_of_abs(au: torch.Tensor) -> torch.Tensor:
    """sigmoid(|u|) in Q16 for 0 <= au <= 32 * 2^16 (the formula of the module docstring)."""
    e = exp2_fixed(rshift_round(-au * LOG2E_Q16, FRAC))
    return div_round(torch.full_like(e, ONE * ONE), e + ONE)


def sigmoid_fixed(u: torch.Tensor) -> torch.Tensor:
    """sigmoid(u) of Q16 ``u`` in Q16, integer only (see the module docstring); |u| < 2^46.
    The definition; ``sigmoid_lookup`` computes the same integers faster."""
    sp = _sigmoid_of_abs(torch.clamp(u.abs(), max=_U_CLAMP))
    return torch.where(u >= 0, sp, ONE - sp)


def gelu_slope_fixed(u: torch.Tensor) -> torch.Tensor:
    """The backward's d = s + rshift_round(u * s1, 16), s = sigmoid_fixed(u),
    s1 = rshift_round(s * (2^16 - s), 16): the definition, for tests (``gelu_backward``
    computes the same integers in place)."""
    s = sigmoid_fixed(u)
    s1 = rshift_round(s * (ONE - s), FRAC)
    return s + rshift_round(u * s1, FRAC)


# sigmoid_fixed(|u|) is exactly 2^16 for every |u| >= SIGMOID_SPAN: there t <= -17.3 * 2^16,
# so exp2_fixed's 2^frac (< 2^17) is shifted right by 17 or more to 0, and div_round(2^32,
# 2^16) = 2^16. A table of _sigmoid_of_abs over 0..SIGMOID_SPAN therefore IS sigmoid_fixed on
# |u| clamped at SIGMOID_SPAN. Its values lie in [2^15, 2^16] (2^15 at 0: exp2_fixed(0) = 2^16,
# div_round(2^32, 2^17) = 2^15), so the table is kept as sp - 2^15 - 1 in [-1, 2^15 - 1]:
# int16, 1.5 MiB, its hot part (|u| < 3) small enough to stay in cache — the gather's cost is
# its cache misses.
SIGMOID_SPAN = 12 * ONE
_SIGMOID_OFFSET = (1 << 15) + 1
_SIGMOID_TABLES: dict[str, torch.Tensor] = {}


def sigmoid_table(device: torch.device) -> torch.Tensor:
    """_sigmoid_of_abs(0..SIGMOID_SPAN) - 2^15 - 1 as int16, computed once per device by the
    integer formula (its range checked, so the int16 copy is exact)."""
    key = str(device)
    if key not in _SIGMOID_TABLES:
        table = _sigmoid_of_abs(torch.arange(SIGMOID_SPAN + 1, device=device))
        ends = [int(table[0]), int(table[-1]), int(table.min()), int(table.max())]
        if ends != [1 << 15, ONE, 1 << 15, ONE]:  # the argument above, checked once
            raise AssertionError("sigmoid table does not span [2^15, 2^16] as argued")
        _SIGMOID_TABLES[key] = (table - _SIGMOID_OFFSET).to(torch.int16)
    return _SIGMOID_TABLES[key]


def sigmoid_lookup(u: torch.Tensor) -> torch.Tensor:
    """``sigmoid_fixed(u)`` bit for bit, by one gather from ``sigmoid_table``.

    sp = table[min(|u|, SPAN)] + 2^15 + 1 is sigmoid_fixed(|u|); sigmoid_fixed(u) is sp for
    u >= 0 and 2^16 - sp for u < 0, i.e. 2^15 + sign(u) (sp - 2^15) (at u = 0, sp = 2^15 and
    both are 2^15). With sp - 2^15 = table + 1: s = (sign(u) + 2^15) + sign(u) table, in int64
    (sign(u) is int64, so the product with the int16 gather is formed in int64; every term is
    at most 2^16 in magnitude): one fresh sum and one ``addcmul_`` into it (value 1, exact
    integer arithmetic) instead of a product and two additions."""
    index = u.abs().clamp_(max=SIGMOID_SPAN).reshape(-1)
    sp = sigmoid_table(u.device).index_select(0, index).reshape(u.shape)
    sign = torch.sign(u)
    s = sign + (1 << 15)
    return s.addcmul_(sign, sp)


def gelu_forward(x: torch.Tensor, *, max_abs: int | None = None) -> tuple[torch.Tensor, GeluSaved]:
    """y = x * sigmoid(1.702 x) in Q16 (see the module docstring for rounding and bounds).

    ``max_abs``: an upper bound on max|x| the caller has proved (e.g. for a linear layer's
    output, |rshift_round(product, 16) + b| <= 2^37 + 1 + max|b| by ``ExactMatmul``'s bound);
    it is checked against the limit instead of scanning x. Default: max|x| itself.
    u and y are rounded in place on their fresh products (the same integers)."""
    bound = maxabs(x) if max_abs is None else max_abs
    require_below(bound, GELU_INPUT_LIMIT, "gelu", "max|x|")
    u = scale_round(x, GELU_A_Q16, FRAC)  # rshift_round(x a, 16), one fused pass
    s = sigmoid_lookup(u)
    return rshift_round_(x * s, FRAC), GeluSaved(s, u)


def gelu_backward(
    saved: GeluSaved, grad_y: torch.Tensor, *, max_abs: int | None = None
) -> tuple[torch.Tensor]:
    """dx = g * (s + a x s (1 - s)) in Q16. ``max_abs``: a proved upper bound on max|g|, as
    in ``gelu_forward``. Every step of d = s + rshift_round(u s1, 16),
    s1 = rshift_round(s (2^16 - s), 16), dx = rshift_round(g d, 16) is done in place on one
    fresh tensor (2^16 - s): the same integer operations in the same order."""
    bound = maxabs(grad_y) if max_abs is None else max_abs
    require_below(bound, GELU_GRAD_LIMIT, "gelu backward", "max|g|")
    s = saved.s
    d = ONE - s
    d *= s
    d = rshift_round_(d, FRAC)  # s1
    d *= saved.u
    d = rshift_round_(d, FRAC)
    d += s
    d *= grad_y
    return (rshift_round_(d, FRAC),)


def gelu_reference(x: torch.Tensor) -> torch.Tensor:
    """float64 x * sigmoid(1.702 x) for real-valued ``x`` (differentiable by autograd)."""
    return x * torch.sigmoid(1.702 * x)

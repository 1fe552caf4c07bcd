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
    once per device by the formula itself): the same integers, one gather instead of ~20
    elementwise passes.

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
    x: torch.Tensor
    u: torch.Tensor  # a x, Q16
    s: torch.Tensor  # sigmoid(a x), Q16


def _sigmoid_of_abs(au: torch.Tensor) -> torch.Tensor:
    """sigmoid(|u|) in Q16 for 0 <= au <= 32 * 2^16 (the formula of the module docstring)."""
    e = exp2_fixed(rshift_round(-au * LOG2E_Q16, FRAC))
    return div_round(torch.full_like(e, ONE * ONE), e + ONE)


def sigmoid_fixed(u: torch.Tensor) -> torch.Tensor:
    """sigmoid(u) of Q16 ``u`` in Q16, integer only (see the module docstring); |u| < 2^46.
    The definition; ``sigmoid_lookup`` computes the same integers faster."""
    sp = _sigmoid_of_abs(torch.clamp(u.abs(), max=_U_CLAMP))
    return torch.where(u >= 0, sp, ONE - sp)


# sigmoid_fixed(|u|) is exactly 2^16 for every |u| >= SIGMOID_SPAN: there t <= -17.3 * 2^16,
# so exp2_fixed's 2^frac (< 2^17) is shifted right by 17 or more to 0, and div_round(2^32,
# 2^16) = 2^16. A table of _sigmoid_of_abs over 0..SIGMOID_SPAN therefore IS sigmoid_fixed.
SIGMOID_SPAN = 12 * ONE
_SIGMOID_TABLES: dict[str, torch.Tensor] = {}


def sigmoid_table(device: torch.device) -> torch.Tensor:
    """_sigmoid_of_abs(0..SIGMOID_SPAN), computed once per device by the integer formula."""
    key = str(device)
    if key not in _SIGMOID_TABLES:
        table = _sigmoid_of_abs(torch.arange(SIGMOID_SPAN + 1, device=device))
        if int(table[-1]) != ONE:  # the argument above, checked once
            raise AssertionError("sigmoid table does not saturate at its span")
        _SIGMOID_TABLES[key] = table
    return _SIGMOID_TABLES[key]


def sigmoid_lookup(u: torch.Tensor) -> torch.Tensor:
    """``sigmoid_fixed(u)`` bit for bit, by one gather from ``sigmoid_table``."""
    index = torch.clamp(u.abs(), max=SIGMOID_SPAN).reshape(-1)
    sp = sigmoid_table(u.device).index_select(0, index).reshape(u.shape)
    # sp if u >= 0 else 2^16 - sp (at u = 0, sp = 2^15 either way): no torch.where pass
    sp -= ONE // 2
    sp *= torch.sign(u)
    sp += ONE // 2
    return sp


def gelu_forward(x: torch.Tensor) -> tuple[torch.Tensor, GeluSaved]:
    """y = x * sigmoid(1.702 x) in Q16 (see the module docstring for rounding and bounds)."""
    require_below(maxabs(x), GELU_INPUT_LIMIT, "gelu", "max|x|")
    u = rshift_round(x * GELU_A_Q16, FRAC)
    s = sigmoid_lookup(u)
    return rshift_round(x * s, FRAC), GeluSaved(x, u, s)


def gelu_backward(saved: GeluSaved, grad_y: torch.Tensor) -> tuple[torch.Tensor]:
    """dx = g * (s + a x s (1 - s)) in Q16."""
    require_below(maxabs(grad_y), GELU_GRAD_LIMIT, "gelu backward", "max|g|")
    s = saved.s
    s1 = rshift_round(s * (ONE - s), FRAC)
    d = s + rshift_round(saved.u * s1, FRAC)
    return (rshift_round(grad_y * d, FRAC),)


def gelu_reference(x: torch.Tensor) -> torch.Tensor:
    """float64 x * sigmoid(1.702 x) for real-valued ``x`` (differentiable by autograd)."""
    return x * torch.sigmoid(1.702 * x)

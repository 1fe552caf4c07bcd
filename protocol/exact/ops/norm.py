"""RMS norm with a learned gain, with an exact integer reciprocal square root.

Math, over the last dimension (size d), eps = 2^-16 on the mean square:

    r   = sqrt(mean(x^2) + eps)
    n   = x / r
    y   = n * gain
    grad_gain = sum over rows of dy * n
    dn  = dy * gain
    dx  = (dn - n * mean(dn * n)) / r

Integers (x, n, y, gain, gradients: Q16; S, m: Q32; r: Q20 = ``RMS_FRAC``):

    S    = sum_i x_i^2                         exact (Q32)
    m    = div_round(S, d) + 2^16              mean square + eps (Q32)
    r    = isqrt(m * 2^8)                      floor(sqrt(.)): r in Q20, r >= 2^12
    n    = div_round(x * 2^20, r)              Q16
    y    = rshift_round(n * gain, 16)
  backward:
    grad_gain = rshift_round(sum_rows(dy * n), 16)     exact Q32 sum, one rounding
    dn   = rshift_round(dy * gain, 16)
    c    = div_round(sum_i dn_i n_i, d * 2^16)          mean(dn n), Q16
    t    = dn * 2^16 - n * c                            Q32, exact
    dx   = div_round(t * 2^4, r)                        Q32+4-20 = Q16

Rounding: ``div_round`` (half up) for each true division, ``isqrt_int64`` (exact floor) for
the square root, ``rshift_round`` (half up) for each product; all sums are exact. (The two
row divisions compute div_round's integers by a float64 quotient with a proved-exact floor,
``floor_div_odd``, while the numerator is below 2^52 — as ``isqrt_int64`` computes its exact
floor from a float64 square root — and by int64 division otherwise.)

Bound (every int64 intermediate < 2^63): |x| < min(2^27, sqrt(2^62 / d)) is checked, so
S < 2^62, m < 2^54 (and >= 2^16), m 2^8 < 2^62 (isqrt's range), x 2^20 < 2^47. The products
and sums whose size depends on the gain and on the gradient are checked at run time before
they are formed: max|n| max|gain| < 2^62; max|dy| max|gain| < 2^62 (so |dn| < 2^46 and
dn 2^16 < 2^62); max|dy| max|n| rows < 2^62; max|dn| max|n| d < 2^62; max|n| max|c| < 2^62;
and |t| < 2^57 before its shift. Any failure raises ``OverflowBoundError``.

Tolerance vs ``rms_norm_reference`` (float64, same eps) of the same Q16 values: the floor of r
errs by < 2^-20 absolute, i.e. rel = 2^-20 / rms relative (1.6e-5 at rms 1/16), and enters
n once and dx twice, so |y - ref| <= 2 rel |ref| + 4 ulp,
|dx - ref| <= 4 rel max_row|dx| + 4 ulp / rms + 2 ulp (the numerator's roundings, divided by
r), |grad_gain - ref| <= 2 rel |ref| + 2 rows ulp (tests/protocol/test_ops_transformer.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from protocol.exact.bounds import batch_rows
from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    as_int64_,
    div_round,
    isqrt_int64,
    maxabs,
    require_below,
    require_product_below,
    rshift_round,
    rshift_round_,
)

RMS_FRAC = 20
EPS_Q32 = 1 << 16  # eps = 2^-16 on the mean square
_LIMIT = 1 << 62


def rms_input_limit(d: int) -> int:
    """max|x| (Q16, exclusive) that the forward admits for width ``d``."""
    return min(1 << 27, math.isqrt(_LIMIT // d))


class RmsNormSaved(NamedTuple):
    n: torch.Tensor  # x / r, Q16
    r: torch.Tensor  # rms, Q20, shape (..., 1)
    gain: torch.Tensor
    n_max: int = -1  # max|n| and max|gain|, as the forward found them (-1: not recorded)
    gain_max: int = -1


def _div_round_by(a: torch.Tensor, divisor: int) -> torch.Tensor:
    """``div_round(a, full_like(a, divisor))`` for a Python int divisor >= 1: for a power of
    two 2^k (k >= 1), floor((2a + 2^k) / 2^(k+1)) = floor((a + 2^(k-1)) / 2^k) =
    rshift_round(a, k) exactly (the same rational number); otherwise the division itself."""
    if divisor > 1 and divisor & (divisor - 1) == 0:
        return rshift_round(a, divisor.bit_length() - 1)
    return div_round(a, torch.full_like(a, divisor))


def floor_div_odd(m: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """floor(m / den) for an ODD integer numerator 2N + 1 given as float64 ``m`` (the caller's
    fresh tensor, |m| < 2^52, every value an integer) and an EVEN float64 ``den`` = 2 D
    (broadcast, 2 <= den < 2^53, integers): that is floor(N / D), exactly, by a float64
    division — no int64 division (~5 ns an element on CPU).

    Proof. Q = m / den = N / D + 1 / (2D) is an odd multiple of 1 / (2D), so N / D < Q <
    (N + 1) / D, both ends multiples of 1 / D, and floor(Q) = floor(N / D) =: k with
    k <= N / D and (N + 1) / D <= k + 1. m and den are exact in float64; the quotient y errs
    by at most 2^-52 |Q| (IEEE division is correctly rounded, 2^-53; the slack covers a device
    an ulp off), and 2^-52 |Q| = 2^-52 |m| / den < 1 / den = 1 / (2D). So y lies strictly
    between N / D and (N + 1) / D, i.e. in [k, k + 1), and floor(y) = k. The floor of a
    float64 is exact, and k (|k| < 2^52) converts to int64 exactly."""
    m /= den
    return as_int64_(m.floor_())


def _div_round_rows(a4: torch.Tensor, a4_max: int, r: torch.Tensor) -> torch.Tensor:
    """div_round(a, r) = floor((2a + r) / 2r) for rows' divisors r (1 <= r < 2^31), given
    ``a4`` = 4a (a fresh int64 tensor the caller gives up) with max|4a| <= a4_max.

    floor((2a + r) / 2r) = floor((2(2a + r) + 1) / 4r) (``floor_div_odd``'s identity with
    N = 2a + r, D = 2r): for a4_max < 2^51 the numerator 4a + 2r + 1 is below 2^52 and the
    division is done in float64 (``floor_div_odd``); otherwise in int64 as ``div_round`` does
    (2a = a4 >> 1 exactly). The same integers either way."""
    if a4_max < 1 << 51:
        m = a4.to(torch.float64)
        m += (2 * r + 1).to(torch.float64)
        return floor_div_odd(m, (4 * r).to(torch.float64))
    a4 >>= 1
    a4 += r
    return a4.div_(2 * r, rounding_mode="floor")


def rms_norm_forward(x: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, RmsNormSaved]:
    """y = x / sqrt(mean(x^2) + 2^-16) * gain over the last dimension (Q16).

    Speed (the same integers as the module docstring's formulas): mean(x^2)'s div_round by a
    power-of-two d is a shift (``_div_round_by``); n = div_round(x 2^20, r) is a float64
    division with an exact floor (``_div_round_rows``: |x 2^22| < 2^49); y's rounding is done
    in place on the fresh product; max|n| and max|gain| are saved for the backward's checks."""
    d = x.shape[-1]
    x_max = maxabs(x)
    require_below(x_max, rms_input_limit(d), "rms norm", "max|x|")
    sq = x * x
    total = sq.sum(dim=-1, keepdim=True)
    del sq
    mean_sq = _div_round_by(total, d) + EPS_Q32
    r = isqrt_int64(mean_sq << (2 * RMS_FRAC - 2 * FRAC))
    n = _div_round_rows(x << (RMS_FRAC + 2), x_max << (RMS_FRAC + 2), r)  # < 2^49: float
    n_max, gain_max = maxabs(n), maxabs(gain)
    require_product_below((n_max, gain_max), 1, _LIMIT, "rms norm", "max|n|*max|gain|")
    y = rshift_round_(n * gain, FRAC)
    return y, RmsNormSaved(n, r, gain, n_max, gain_max)


def rms_norm_backward(
    saved: RmsNormSaved, grad_y: torch.Tensor, *, round_gain_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x, grad_gain) for the gradient ``grad_y`` of y (grad_gain summed over rows).

    Speed (the same integers): max|n| and max|gain| come from the forward (n and gain are not
    modified in between); c's div_round by d 2^16 is a shift for a power-of-two d; t is
    formed in place; grad_x = div_round(t 2^4, r) by ``_div_round_rows``'s float64 division
    when max|t| < 2^45, else in int64 in place.

    ``round_gain_grad=False``: grad_gain is the exact row sum before its rshift_round (a
    worker's share of the batch: ``protocol.exact.shard``); the row count in the bounds is the
    whole batch's."""
    n, r, gain = saved.n, saved.r, saved.gain
    d = n.shape[-1]
    rows = batch_rows(n.numel() // max(d, 1))
    g_max = maxabs(grad_y)
    n_max = saved.n_max if saved.n_max >= 0 else maxabs(n)
    gain_max = saved.gain_max if saved.gain_max >= 0 else maxabs(gain)
    where = "rms norm backward"
    require_product_below((g_max, gain_max), 1, _LIMIT, where, "max|dy|*max|gain|")
    require_product_below((g_max, n_max), rows, _LIMIT, where, "max|dy|*max|n|*rows")
    grad_gain = (grad_y * n).reshape(-1, d).sum(dim=0)
    if round_gain_grad:
        grad_gain = rshift_round_(grad_gain, FRAC)
    dn = rshift_round_(grad_y * gain, FRAC)
    require_product_below((maxabs(dn), n_max), d, _LIMIT, where, "max|dn|*max|n|*d")
    dot = (dn * n).sum(dim=-1, keepdim=True)
    c = _div_round_by(dot, d << FRAC)
    require_product_below((n_max, maxabs(c)), 1, _LIMIT, where, "max|n|*max|c|")
    t = n * c
    torch.sub(dn << FRAC, t, out=t)  # t = dn 2^16 - n c
    t_max = maxabs(t)
    require_below(t_max, 1 << 57, "rms norm backward", "max|t|")
    if t_max < 1 << 45:  # 4 (t 2^4) < 2^51: the float64 division (_div_round_rows)
        t <<= RMS_FRAC - FRAC + 2
        grad_x = _div_round_rows(t, t_max << (RMS_FRAC - FRAC + 2), r)
    else:  # div_round(t 2^4, r) in int64: (2 t 2^4 + r) floor-divided by 2r, |.| < 2^62
        t <<= RMS_FRAC - FRAC + 1
        t += r
        grad_x = t.div_(2 * r, rounding_mode="floor")
    return grad_x, grad_gain


def rms_norm_reference(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """float64 RMS norm of real-valued x with real-valued gain, eps = 2^-16 (differentiable)."""
    eps = float(EPS_Q32) / float(ONE * ONE)
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * gain

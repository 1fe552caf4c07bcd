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
the square root, ``rshift_round`` (half up) for each product; all sums are exact.

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
r), |grad_gain - ref| <= 2 rel |ref| + 2 rows ulp (tests/test_ops_transformer.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    div_round,
    isqrt_int64,
    maxabs,
    require_below,
    rshift_round,
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


def rms_norm_forward(x: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, RmsNormSaved]:
    """y = x / sqrt(mean(x^2) + 2^-16) * gain over the last dimension (Q16)."""
    d = x.shape[-1]
    require_below(maxabs(x), rms_input_limit(d), "rms norm", "max|x|")
    total = (x * x).sum(dim=-1, keepdim=True)
    mean_sq = div_round(total, torch.full_like(total, d)) + EPS_Q32
    r = isqrt_int64(mean_sq << (2 * RMS_FRAC - 2 * FRAC))
    n = div_round(x << RMS_FRAC, r)
    require_below(maxabs(n) * maxabs(gain), _LIMIT, "rms norm", "max|n|*max|gain|")
    y = rshift_round(n * gain, FRAC)
    return y, RmsNormSaved(n, r, gain)


def rms_norm_backward(
    saved: RmsNormSaved, grad_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x, grad_gain) for the gradient ``grad_y`` of y (grad_gain summed over rows)."""
    n, r, gain = saved
    d = n.shape[-1]
    rows = n.numel() // max(d, 1)
    g_max, n_max = maxabs(grad_y), maxabs(n)
    require_below(g_max * maxabs(gain), _LIMIT, "rms norm backward", "max|dy|*max|gain|")
    require_below(g_max * n_max * rows, _LIMIT, "rms norm backward", "max|dy|*max|n|*rows")
    grad_gain = rshift_round((grad_y * n).reshape(-1, d).sum(dim=0), FRAC)
    dn = rshift_round(grad_y * gain, FRAC)
    require_below(maxabs(dn) * n_max * d, _LIMIT, "rms norm backward", "max|dn|*max|n|*d")
    dot = (dn * n).sum(dim=-1, keepdim=True)
    c = div_round(dot, torch.full_like(dot, d << FRAC))
    require_below(n_max * maxabs(c), _LIMIT, "rms norm backward", "max|n|*max|c|")
    t = (dn << FRAC) - n * c
    require_below(maxabs(t), 1 << 57, "rms norm backward", "max|t|")
    grad_x = div_round(t << (RMS_FRAC - FRAC), r)
    return grad_x, grad_gain


def rms_norm_reference(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """float64 RMS norm of real-valued x with real-valued gain, eps = 2^-16 (differentiable)."""
    eps = float(EPS_Q32) / float(ONE * ONE)
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * gain

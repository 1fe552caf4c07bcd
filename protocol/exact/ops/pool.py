"""Exact 2-D max and average pooling with kernel = stride = p (no padding), forward and
backward on int64 Q16 tensors (B, C, H, W) -> (B, C, H // p, W // p).

As in torch (``MaxPool2d(p)``, ``AvgPool2d(p)``), trailing rows and columns that do not fill a
window are dropped: they get zero gradient. p = 1 is the identity.

Max pooling
    forward   out = max over the window;  saved: the flat index (kh·p + kw) of the winner
    backward  grad_x[winner] = grad_out, 0 elsewhere in the window
    Ties: the *first* maximal element in row-major window order (lowest kh, then lowest kw)
    wins: a running maximum over the window offsets in that order, replaced only by a strictly
    greater value (integer comparisons) — not ``argmax``, whose tie rule is not a documented
    cross-device guarantee. (torch's CPU kernel scans the window in the same order and keeps
    the first maximum, so the float reference agrees even on ties.)
    Rounding: none. Bounds: no arithmetic on values. Tolerance: equal to the reference.

Average pooling (n = p·p)
    forward   out    = rshift_round(sum over the window, log2 n)   if n is a power of two
                       div_round(sum over the window, n)           otherwise
    backward  grad_x = the same rounding of grad_out / n, copied to each element of the window
    Rounding: one rounding (half up) per output element; both rules round half towards +inf.
    Bounds: the window sum is at most n · max|x|; ``avgpool2d_forward`` (and the backward,
    for grad_out) checks n · max|x| < 2^61 at run time and raises ``OverflowBoundError``
    otherwise, so neither the sum nor ``div_round``'s 2·sum + n can wrap int64. Inside the VM
    activations are below 2^41, so the check never fires there for any p < 2^10.
    Tolerance vs the float64 reference: at most 0.5 in Q16 units, forward and backward.

References (``maxpool2d_reference``, ``avgpool2d_reference``) use ``torch.nn.functional``
pooling and autograd in float64 and report values in Q16 units (times 2^16).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from protocol.exact.fixedpoint import ONE, div_round, require_product_below, rshift_round

_SUM_LIMIT = 1 << 61


class PoolSaved(NamedTuple):
    """What the pooling backward passes need: the input shape, p, and (max only) winners."""

    input_shape: tuple[int, int, int, int]
    pool: int
    winner: torch.Tensor | None  # (B, C, OH, OW) int64 flat window index, max pooling only


def _shape(x: torch.Tensor, pool: int) -> tuple[int, int, int, int]:
    if x.dim() != 4:
        raise ValueError(f"pooling needs a (B, C, H, W) tensor, got {tuple(x.shape)}")
    b, c, h, w = (int(v) for v in x.shape)
    if pool < 1 or h // pool < 1 or w // pool < 1:
        raise ValueError(f"pool {pool} does not fit a {h}x{w} input")
    return b, c, h, w


def _offsets(pool: int) -> list[tuple[int, int]]:
    """Window offsets (kh, kw) in row-major order: flat index kh·p + kw."""
    return [(kh, kw) for kh in range(pool) for kw in range(pool)]


def _window_slab(x: torch.Tensor, pool: int, kh: int, kw: int) -> torch.Tensor:
    """The (B, C, OH, OW) view of every window's element at offset (kh, kw)."""
    oh, ow = x.shape[2] // pool, x.shape[3] // pool
    return x[:, :, kh : kh + pool * (oh - 1) + 1 : pool, kw : kw + pool * (ow - 1) + 1 : pool]


def maxpool2d_forward(x: torch.Tensor, pool: int) -> tuple[torch.Tensor, PoolSaved]:
    """Max over each p×p window; ties go to the first element in row-major order (a running
    maximum over the offsets in that order, replaced only by a strictly greater value)."""
    shape = _shape(x, pool)
    best = _window_slab(x, pool, 0, 0).clone()
    winner = torch.zeros_like(best)
    for index, (kh, kw) in enumerate(_offsets(pool)[1:], start=1):
        candidate = _window_slab(x, pool, kh, kw)
        better = candidate > best
        best = torch.where(better, candidate, best)
        winner.masked_fill_(better, index)
    return best, PoolSaved(shape, pool, winner)


def maxpool2d_backward(saved: PoolSaved, grad_out: torch.Tensor) -> torch.Tensor:
    """grad_out routed to each window's winner; zeros elsewhere (exact)."""
    if saved.winner is None:
        raise ValueError("maxpool2d_backward needs the saved winners of maxpool2d_forward")
    grad_x = torch.zeros(saved.input_shape, dtype=torch.int64, device=grad_out.device)
    for index, (kh, kw) in enumerate(_offsets(saved.pool)):
        _window_slab(grad_x, saved.pool, kh, kw).copy_(grad_out * (saved.winner == index))
    return grad_x


def _check_sum(t: torch.Tensor, n: int, where: str) -> None:
    if not t.numel():
        return
    # max and min, not abs(): |-2^63| wraps in int64.
    high = max(int(t.amax().item()), -int(t.amin().item()))
    require_product_below((high,), n, _SUM_LIMIT, where, "n*max|x|")


def _divide(t: torch.Tensor, n: int) -> torch.Tensor:
    """t / n rounded half up: a shift when n is a power of two, ``div_round`` otherwise."""
    if n & (n - 1) == 0:
        return rshift_round(t, n.bit_length() - 1)
    return div_round(t, torch.tensor(n, dtype=torch.int64, device=t.device))


def avgpool2d_forward(
    x: torch.Tensor, pool: int, where: str = "avgpool"
) -> tuple[torch.Tensor, PoolSaved]:
    """Mean over each p×p window, one half-up rounding (module doc); checks the sum bound."""
    shape = _shape(x, pool)
    n = pool * pool
    _check_sum(x, n, where)
    total = _window_slab(x, pool, 0, 0).clone()
    for kh, kw in _offsets(pool)[1:]:
        total += _window_slab(x, pool, kh, kw)
    out = _divide(total, n)
    return out, PoolSaved(shape, pool, None)


def avgpool2d_backward(
    saved: PoolSaved, grad_out: torch.Tensor, where: str = "avgpool"
) -> torch.Tensor:
    """grad_out / (p·p), rounded half up once, copied to every element of its window."""
    n = saved.pool * saved.pool
    _check_sum(grad_out, n, f"{where}.backward")
    share = _divide(grad_out, n)
    grad_x = torch.zeros(saved.input_shape, dtype=torch.int64, device=grad_out.device)
    for kh, kw in _offsets(saved.pool):
        _window_slab(grad_x, saved.pool, kh, kw).copy_(share)
    return grad_x


def _pool_reference(
    fn: str, x: torch.Tensor, pool: int, grad_out: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    xf = (x.to(torch.float64) / ONE).requires_grad_(grad_out is not None)
    out = F.max_pool2d(xf, pool) if fn == "max" else F.avg_pool2d(xf, pool)
    if grad_out is None:
        return out.detach() * ONE, None
    (gx,) = torch.autograd.grad(out, (xf,), grad_out.to(torch.float64) / ONE)
    return out.detach() * ONE, gx * ONE


def maxpool2d_reference(
    x: torch.Tensor, pool: int, grad_out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float64 (out, grad_x) by ``F.max_pool2d`` and autograd, in Q16 units."""
    return _pool_reference("max", x, pool, grad_out)


def avgpool2d_reference(
    x: torch.Tensor, pool: int, grad_out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float64 (out, grad_x) by ``F.avg_pool2d`` and autograd, in Q16 units."""
    return _pool_reference("avg", x, pool, grad_out)

"""Fixed-point integer arithmetic that is bit-identical on every device and thread count.

House rules of the exact VM:

* Every tensor of the training state and every activation is an ``int64`` tensor holding a
  fixed-point number with ``FRAC`` fractional bits (1.0 == ``ONE``).
* Requantization is one rule only: ``rshift_round`` (add half, arithmetic shift right), i.e.
  round half towards +infinity.
* Matrix products carry the integer operands in float64 and call ``torch.matmul``. Every product
  and partial sum is an integer below 2^53, so float64 represents each exactly and the result is
  independent of summation order, blocking, FMA contraction and device. That holds only while
  ``max|a| * max|b| * K < 2^53``: ``ExactMatmul`` checks the bound of every product before
  computing it and raises ``OverflowBoundError`` instead (nothing inexact is ever computed, so
  nothing device-dependent can follow from it). ``mlp.step`` turns that into the overflow rule
  (see its docstring): the VM is total.
* No float ``exp``/``log``: the softmax uses ``exp2_fixed``, an integer polynomial for 2^f.
* Every value of a state a step starts from is below ``STATE_LIMIT`` (2^40) in magnitude, or the
  step is skipped (``check_state_range``). With the product bound that keeps every int64
  intermediate of a step below 2^59: a pre-activation is below 2^37 + 2^40, the softmax's
  ``shifted * LOG2E_Q16`` below 2^59, a momentum times ``momentum_q16`` below 2^56 — so no
  elementwise operation can wrap either.
* AdamW (``mlp._adamw_update``) adds an exact integer square root (``isqrt_int64``) and one
  division under the same rounding rule (``div_round``); its intermediates stay below 2^62
  (argument beside the code), and its own bounds raise ``OverflowBoundError`` like the rest.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterable, Sequence

import torch

from protocol.errors import OverflowBoundError
from protocol.exact.bounds import (
    BoundCheck,
    batch_rows,
    logging_active,
    record_only,
    require_product,
)

FRAC = 16
ONE = 1 << FRAC
EXACT_LIMIT = float(2**53)
STATE_LIMIT = 1 << 40

LOG2E_Q16 = 94548  # round(log2(e) * 2^16)
# 2^f ≈ 1 + c1 f + c2 f^2 + c3 f^3 on [0, 1), least-squares fit, coefficients in Q16;
# max abs error 2.4e-4 (relative), far below what training notices.
EXP2_C1, EXP2_C2, EXP2_C3 = 45576, 14873, 5071
SOFTMAX_MIN_EXPONENT = -31  # 2^-31 underflows Q16 anyway; clamping keeps shifts in range


def rshift_round(x: torch.Tensor, shift: int) -> torch.Tensor:
    """x / 2^shift rounded half towards +infinity — the VM's only rounding rule."""
    if shift == 0:
        return x
    out = x + (1 << (shift - 1))
    out >>= shift
    return out


def rshift_round_(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``rshift_round`` in place, for a tensor the caller owns and no one else holds (a fresh
    product): the same integers, without allocating two weight-sized temporaries."""
    if shift:
        x += 1 << (shift - 1)
        x >>= shift
    return x


def scale_round(
    x: torch.Tensor, c: int, shift: int, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``rshift_round(x * c, shift)`` for an int64 tensor x, a Python integer c and shift >= 1,
    where the caller has bounded |x c| + 2^(shift - 1) below 2^63 (the bound the product form
    needs): x c + 2^(shift - 1) in one pass (``torch.add`` with ``alpha=c``: the exact int64
    multiply-add, the same integer as the product then the sum), then the shift in place.
    ``out=x`` writes over x (the output overlaps the input exactly; elementwise)."""
    half = x.new_full((), 1 << (shift - 1))
    r = torch.add(half, x, alpha=c) if out is None else torch.add(half, x, alpha=c, out=out)
    r >>= shift
    return r


def as_int64_(t: torch.Tensor) -> torch.Tensor:
    """``t.to(torch.int64)`` for a float64 tensor the caller owns (a fresh product), written
    over its own storage: no second weight-sized buffer (whose fresh pages cost more than the
    conversion). ``view(int64)`` reinterprets the same 8-byte elements with the same strides,
    and ``copy_`` from a source that overlaps its destination *fully* (element k onto element
    k, which TensorIterator permits, as for any in-place op) reads each element before it
    writes it; the conversion itself is the same truncation as ``to``. The float64 view must
    not be used afterwards."""
    return t.view(torch.int64).copy_(t)


def float_maxabs(t64: torch.Tensor) -> torch.Tensor:
    """max|v| of a non-empty float64 tensor of integers below 2^53, as a 0-d float64 tensor:
    max(-min v, max v) from ``amin`` and ``amax`` — the same value as ``abs().amax()`` and as
    ``aminmax``'s (negation and comparison are exact; no NaN) — two vectorized reductions
    (~14 us each on 131k elements on CPU, where ``aminmax`` is ~44 and ``abs().amax()`` ~41:
    a written copy); below 8,192 elements one ``aminmax`` (fewer dispatches), the same value."""
    if t64.numel() < 8192:
        lo, hi = torch.aminmax(t64)
        return torch.maximum(-lo, hi)
    return torch.maximum(t64.amin().neg_(), t64.amax())


class Operand:
    """A matmul operand: the int64 tensor carried in float64, with its max |value|.

    Converting once and reducing once lets a step reuse a weight in the forward and the
    backward pass (and its transpose) without paying for either twice.
    """

    __slots__ = ("_maxabs_float", "maxabs", "t64")

    def __init__(self, t64: torch.Tensor, maxabs: torch.Tensor) -> None:
        self.t64 = t64
        self.maxabs = maxabs
        self._maxabs_float: float | None = None

    def maxabs_float(self) -> float:
        """``maxabs`` as a Python float (one device sync per operand, not per product)."""
        if self._maxabs_float is None:
            self._maxabs_float = float(self.maxabs)
        return self._maxabs_float

    @classmethod
    def of(cls, t: torch.Tensor, *, nonnegative: bool = False) -> Operand:
        t64 = t.to(torch.float64)
        return cls(t64, t64.amax() if nonnegative else float_maxabs(t64))

    @property
    def T(self) -> Operand:
        transposed = Operand(self.t64.T, self.maxabs)
        transposed._maxabs_float = self._maxabs_float
        return transposed


_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_retained = False


def retain_freed_memory() -> None:
    """Let glibc's malloc keep freed tensor memory for reuse instead of returning it to the
    OS (once per process, from ``prepare_exact``; a no-op elsewhere). Changes no value, only
    where buffers come from.

    An exact step is pure: it allocates its new state (and the float64 carriers and products)
    fresh, several weight-sized buffers per step, and frees as many. Under glibc's default
    policy those buffers are mmapped or trimmed away when freed, so every step faults in and
    zeroes its buffers' pages again — at [64, 1024, 1024, 10] b128 up to ~2,000 page faults
    and several ms a step on a loaded machine, more than all the step's elementwise work.
    Buffers below 32 MiB now come from the heap, and up to 1 GiB of free heap is kept: the
    next step reuses pages already mapped. (PyTorch's CPU tuning guide recommends the same
    effect through jemalloc or tcmalloc.) Peak memory is unchanged; freed memory is kept.
    """
    global _retained
    if _retained:
        return
    _retained = True
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


_MATMUL_WHAT = "max|a|*max|b|*K"


class ExactMatmul:
    """Performs exact integer matmuls, refusing any whose result could be inexact.

    The bound is checked *before* the product: a product past 2^53 would round, and what
    follows from rounded values (an int64 conversion out of range, a shift by a garbage
    amount) differs between devices. One device sync per product is the price.

    ``known`` (optional) pairs tensors with their exact max |value|, as ``check_state_range``
    returns it for a step's state; ``operand(t)`` then converts such a tensor without scanning
    it again. One instance serves one step (``program.train_step`` makes it right after the
    range check): the state a step starts from is not mutated while the step runs (the step
    is pure and the family only reads its parameters), so each recorded maximum is the
    tensor's maximum whenever ``operand`` is called. Strong references are kept, so an
    ``id`` cannot be reused by another tensor while the instance lives.
    """

    def __init__(self, known: Iterable[tuple[torch.Tensor, int]] = ()) -> None:
        self._known: dict[int, tuple[torch.Tensor, int]] = {id(t): (t, m) for t, m in known}

    def operand(self, t: torch.Tensor) -> Operand:
        """``Operand.of(t)``, with the same ``maxabs`` value, taken from ``known`` if there.

        Identity: ``Operand.of`` returns ``abs(float64(t)).amax()``; for |t| < 2^53 (every
        known tensor is below 2^40) the conversion and ``abs`` are exact, so that is the
        float64 value of max |t| — which ``float(m)`` is too (m < 2^40, exact in float64).
        """
        hit = self._known.get(id(t))
        if hit is None or hit[0] is not t:
            return Operand.of(t)
        t64 = t.to(torch.float64)
        return Operand(t64, torch.tensor(float(hit[1]), dtype=torch.float64, device=t.device))

    def __call__(
        self,
        a: Operand | torch.Tensor,
        b: Operand | torch.Tensor,
        where: str,
        *,
        over_rows: bool = False,
    ) -> torch.Tensor:
        """a @ b, exactly, or ``OverflowBoundError``. ``over_rows``: the inner dimension runs
        over the batch's rows (a weight gradient x^T g): K is the whole batch's row count
        (``bounds.batch_rows``), also when this process computes only its share of it."""
        a_op = a if isinstance(a, Operand) else self.operand(a)
        b_op = b if isinstance(b, Operand) else self.operand(b)
        inner = a_op.t64.shape[-1]
        if over_rows:
            inner = batch_rows(inner)
        # The same float64 products in the same order as on 0-d tensors: (a * b) * K.
        a_max, b_max = a_op.maxabs_float(), b_op.maxabs_float()
        bound = a_max * b_max * float(inner)
        if logging_active():
            record_only(
                BoundCheck(where, _MATMUL_WHAT, "2^53", (a_max, b_max), inner, EXACT_LIMIT, True)
            )
        if bound >= EXACT_LIMIT:
            raise OverflowBoundError(where, bound)
        product = torch.matmul(a_op.t64, b_op.t64)
        return as_int64_(product)

    def check(self) -> None:
        """Kept for callers that batch their checks: every product was checked when made."""


def check_state_range(tensors: Sequence[torch.Tensor]) -> list[int]:
    """Raise OverflowBoundError if any value is ``STATE_LIMIT`` or more in magnitude (one
    device sync): past it, elementwise int64 arithmetic of a step could wrap. Otherwise
    return each tensor's exact max |value| (Python ints; for ``ExactMatmul(known=...)``).

    One ``aminmax`` pass per tensor (min and max in one read; ``amin`` alone on int64 is
    several times slower than ``amax`` on CPU), one stacked transfer of all the extremes.
    The magnitudes are formed from min and max as Python ints, not by ``abs()`` in int64:
    |-2^63| wraps there and would pass. Every tensor must be non-empty.
    """
    if not tensors:
        return []
    extremes = [torch.aminmax(t) for t in tensors]
    lows = torch.stack([e.min for e in extremes])
    highs = torch.stack([e.max for e in extremes])
    low_list, high_list = torch.stack([lows, highs]).tolist()
    maxabs = [max(high, -low) for low, high in zip(low_list, high_list, strict=True)]
    worst = max(maxabs)
    if worst >= STATE_LIMIT:
        raise OverflowBoundError("state", float(worst), "max|value|", "2^40")
    return maxabs


def exp2_fixed(t: torch.Tensor) -> torch.Tensor:
    """2^(t / ONE) in Q16 for t <= 0 (Q16), in integer arithmetic only."""
    t = torch.clamp(t, min=SOFTMAX_MIN_EXPONENT * ONE)
    whole = t >> FRAC  # floor: an integer <= 0
    frac = t - (whole << FRAC)  # in [0, ONE)
    inner = rshift_round_(frac * EXP2_C3, FRAC) + EXP2_C2
    inner = rshift_round_(frac * inner, FRAC) + EXP2_C1
    pow2_frac = rshift_round_(frac * inner, FRAC) + ONE  # 2^frac in [ONE, 2*ONE)
    return pow2_frac >> (-whole)


def softmax_fixed(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax of Q16 logits, as Q16 probabilities, in integer arithmetic only."""
    shifted = logits - logits.amax(dim=1, keepdim=True)  # <= 0
    exps = exp2_fixed(rshift_round_(shifted * LOG2E_Q16, FRAC))
    total = exps.sum(dim=1, keepdim=True)  # >= ONE: the max element contributes 2^0
    return torch.div(exps << FRAC, total, rounding_mode="floor")


ISQRT_LIMIT = 1 << 62


def isqrt_int64(x: torch.Tensor, *, below: int = 1 << 62) -> torch.Tensor:
    """floor(sqrt(x)) of every element of an int64 tensor with 0 <= x < 2^62, exactly.
    ``below``: a bound the caller has proved, x < below (default 2^62); at or under 2^50 the
    downward correction is skipped (second proof below).

    Proof. Let s = floor(sqrt(x)) < 2^31. Converting x to float64 errs by a factor (1 + d1),
    |d1| <= 2^-53, and the IEEE square root by (1 + d2), |d2| <= 2^-53; so the float result y
    satisfies |y - sqrt(x)| <= sqrt(x) * 2^-52 < 2^31 * 2^-52 = 2^-21 < 1, hence
    r = floor(y) is s - 1, s or s + 1. (Even a square root off by a few ulps on some device
    keeps r within one of s.) One downward correction (r -= 1 where r^2 > x) then turns s + 1
    into s and leaves s and s - 1 alone; one upward correction (r += 1 where (r+1)^2 <= x)
    turns s - 1 into s and leaves s alone. All products are below (2^31 + 2)^2 < 2^63, so
    nothing wraps. The result is therefore exactly s for every x in range, on every device.
    """
    r = x.to(torch.float64)
    r.sqrt_()
    r.floor_()
    r = as_int64_(r)
    if below <= 1 << 50:
        # x < 2^50: x converts exactly and s < 2^25. The root is within 2^-52 relative
        # (the same device slack as above): y <= sqrt(x) + 2^-52 2^25 = sqrt(x) + 2^-27, and
        # s + 1 - sqrt(x) >= s + 1 - sqrt(s^2 + 2s) = 1 / (s + 1 + sqrt(s^2 + 2s)) > 1 / (2s
        # + 2) >= 2^-26, so y < s + 1; and y >= s (1 - 2^-52) > s - 1. So r is s - 1 or s,
        # and only the upward correction is needed (the same one as below; (r + 1)^2 <= 2^50).
        return _correct_upward(r, x, r + 1)
    # The two corrections without bool tensors: for |d| < 2^63, d >> 63 is -1 if d < 0 else 0
    # (arithmetic shift). x - r^2 and x - (r + 1)^2 lie in (-2^62, 2^62): no wrap.
    t = r * r
    torch.sub(x, t, out=t)
    t >>= 63
    r += t  # r -= 1 where r^2 > x
    return _correct_upward(r, x, torch.add(r, 1, out=t))


def _correct_upward(r: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """r += 1 where (r + 1)^2 <= x, in place, given t = r + 1 (a scratch tensor it consumes):
    for |d| < 2^63, d >> 63 is -1 if d < 0 else 0 (arithmetic shift), so
    (x - (r + 1)^2 >> 63) + 1 is 1 exactly where (r + 1)^2 <= x."""
    t.mul_(t)
    torch.sub(x, t, out=t)
    t >>= 63
    t += 1
    r += t
    return r


def max_abs(tensors: Sequence[torch.Tensor]) -> int:
    """The largest |value| of int64 tensors as a Python integer (0 if all are empty), from
    one ``aminmax`` pass per tensor and one device sync for all: max(max t, -min t) on Python
    integers, so -2^63 counts as 2^63 (int64 ``abs`` would wrap it to itself and pass a
    bound check; red team)."""
    live = [t for t in tensors if t.numel()]
    if not live:
        return 0
    extremes = [torch.aminmax(t) for t in live]
    lows = torch.stack([e.min for e in extremes])
    highs = torch.stack([e.max for e in extremes])
    low_list, high_list = torch.stack([lows, highs]).tolist()
    return int(max(max(high, -low) for low, high in zip(low_list, high_list, strict=True)))


def div_round(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b for b > 0 rounded half towards +infinity — ``rshift_round``'s rule for a divisor
    that is not a power of two: floor((2a + b) / 2b) in exact int64 floor division.

    The caller guarantees |2a| + b < 2^63 (no wrap) and b >= 1.
    """
    return torch.div(2 * a + b, 2 * b, rounding_mode="floor")


def round_div_int(a: int, b: int) -> int:
    """``div_round`` on Python integers (b > 0)."""
    return (2 * a + b) // (2 * b)


def pow_fixed(base: int, exponent: int, frac: int) -> int:
    """base^exponent for a fixed-point ``base`` with ``frac`` fractional bits, by square and
    multiply on Python integers, each product requantized with the VM's rounding rule
    (round half up). Deterministic and O(log exponent)."""
    half = 1 << (frac - 1)
    result = 1 << frac
    while exponent:
        if exponent & 1:
            result = (result * base + half) >> frac
        base = (base * base + half) >> frac
        exponent >>= 1
    return result


SUM_LIMIT = float(2**62)


def check_sum_bound(maxabs: torch.Tensor | float, terms: int, where: str) -> None:
    """Raise OverflowBoundError unless a sum of ``terms`` int64 values of magnitude at most
    ``maxabs`` stays below 2^62 (so it, and the one addition a caller may make to it, cannot
    wrap). ``maxabs`` is the float64 max |value| an ``Operand`` already carries: no extra pass.
    ``terms`` counts the whole batch's rows (``bounds.batch_rows``) where the sum runs over
    them."""
    require_product(where, "max|g|*N", "2^62", (float(maxabs),), terms, SUM_LIMIT, in_float=True)


def maxabs(t: torch.Tensor) -> int:
    """``max_abs([t])`` for one tensor, from one ``aminmax`` and two scalar reads (the
    operators call it a few dozen times a step; stacking for one tensor costs three times as
    much): max(max t, -min t) on Python integers, -2^63 counted as 2^63, 0 if empty."""
    if t.numel() == 0:
        return 0
    lo, hi = torch.aminmax(t)
    return max(int(hi.item()), -int(lo.item()))


def require_below(value: int, limit: int, where: str, what: str) -> None:
    """Raise ``OverflowBoundError`` unless ``value < limit`` (Python integers, no wrap);
    ``value`` is one max|.| (recorded as such: ``protocol.exact.bounds``)."""
    require_product_below((value,), 1, limit, where, what)


def require_product_below(
    factors: tuple[int, ...], scale: int, limit: int, where: str, what: str
) -> None:
    """Raise ``OverflowBoundError`` unless factors[0] * ... * scale < limit (Python
    integers). The factors are maxima over the step's tensors, given separately so that a
    step split across workers combines each one's max (``protocol.exact.bounds``); a
    ``scale`` that counts the batch's rows is the whole batch's (``bounds.batch_rows``)."""
    limit_text = f"2^{limit.bit_length() - 1}"
    require_product(where, what, limit_text, factors, scale, limit, in_float=False)

"""Causal multi-head self-attention core with an integer softmax, and that softmax.

Shapes: q, k, v (B, h, T, dh), Q16. Math, with c = 1/sqrt(dh) and M the causal mask
(M_ij = [j <= i]):

    S  = c q k^T ;  P = softmax_j(S masked by M) ;  O = P v
  backward, for the gradient G of O:
    dV = P^T G ;  dP = G v^T ;  dS = P * (dP - rowsum(dP * P)) ;  dq = c dS k ;  dk = c dS^T q

Integers (Q16; C = round(2^16 / sqrt(dh)), ``attention_scale``):

    S16 = rshift_round(q @ k^T, 16) ;  S = rshift_round(S16 * C, 16)
    P   = softmax_lastdim(S, M)                        (exactly 0 where M is false)
    O   = rshift_round(P @ v, 16)
    dV  = rshift_round(P^T @ G, 16) ;  dP = rshift_round(G @ v^T, 16)
    dS  = softmax_backward(P, dP)
    dS16 = rshift_round(dS * C, 16)
    dq  = rshift_round(dS16 @ k, 16) ;  dk = rshift_round(dS16^T @ q, 16)

softmax_lastdim (the house ``softmax_fixed`` generalized to the last dimension of any shape,
with an optional mask; bit-identical to ``softmax_fixed`` on an unmasked 2-D input):

    Z  = (x - max_{j in M} x_j), clamped below at -32 (real units; masked x count as -2^61)
    E  = exp2_fixed(rshift_round(Z * LOG2E, 16)), set to 0 where M is false (computed as
         exp2_fixed's own 2^frac, from a 2^16-entry table, shifted by -whole:
         ``exp2_softmax_``, the same integers, faster)
    P  = floor(E * 2^16 / sum_j E_j)                   (sum >= 2^16: the max contributes 2^0)

    The clamp changes nothing: exp2_fixed already clamps its argument at -31, where 2^-31
    underflows Q16 to 0, and -32 * log2(e) < -46. It keeps Z * LOG2E below 2^39.

softmax_backward:  R = rshift_round(rowsum(dP * P), 16) ;  dS = rshift_round(P (dP - R), 16)

Rounding: one ``rshift_round`` per product (half up); the softmax's division is floor, as in
``softmax_fixed``, so that rows sum to at most 2^16.

Bound: every matmul goes through the caller's ``ExactMatmul`` (max|a| max|b| K < 2^53 or
``OverflowBoundError``), so |S16| < 2^37 and |S16 C| < 2^53 (C <= 2^16). The softmax checks
|x| < 2^61 (so x - max cannot wrap). The backward checks max|dP| < 2^44: then |dP P| < 2^60,
|rowsum(dP P)| <= max|dP| 2^16 < 2^60 (the row of P sums to at most 2^16), |dP - R| < 2^45 and
|P (dP - R)| < 2^61; |dS| < 2^45 and |dS C| < 2^61.

Tolerance vs ``attention_reference`` (float64 with c = 1/sqrt(dh) exactly; dh a power of 4
makes C exact): P within 4e-4 (exp2_fixed's 2.4e-4 relative error, the floor, the rounding of
S), so |O - ref| <= 4e-4 T max|v| + 2 ulp, and the gradients within the same relative error
of their magnitude plus a few ulp (tests/protocol/test_ops_transformer.py states the exact figures).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from protocol.exact.fixedpoint import (
    EXP2_C1,
    EXP2_C2,
    EXP2_C3,
    FRAC,
    LOG2E_Q16,
    ONE,
    ExactMatmul,
    Operand,
    exp2_fixed,
    float_maxabs,
    maxabs,
    require_below,
    rshift_round_,
    scale_round,
)
from protocol.exact.ops.norm import floor_div_odd

SOFTMAX_INPUT_LIMIT = 1 << 61
SOFTMAX_GRAD_LIMIT = 1 << 44
_Z_FLOOR = -32 * ONE


def attention_scale(dh: int) -> int:
    """C = round(2^16 / sqrt(dh)) (half up), computed in integers."""
    return (math.isqrt((1 << (2 * FRAC + 2)) // dh) + 1) // 2


def causal_mask(t: int, device: torch.device) -> torch.Tensor:
    """(T, T) bool, True where key j <= query i."""
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


# exp2_fixed(t) is exactly 0 for every t < -16 * 2^16 (2^frac < 2^17 shifted right by 17 or
# more), so a table of exp2_fixed(-n) for n = 0..EXP2_SPAN + 1 (the last entry 0) IS
# exp2_fixed on every t <= 0 with the index clamped at EXP2_SPAN + 1.
EXP2_SPAN = 16 * ONE
_EXP2_TABLES: dict[str, torch.Tensor] = {}


def exp2_table(device: torch.device) -> torch.Tensor:
    """exp2_fixed(-n) for n = 0..EXP2_SPAN + 1, computed once per device by exp2_fixed."""
    key = str(device)
    if key not in _EXP2_TABLES:
        table = exp2_fixed(-torch.arange(EXP2_SPAN + 2, device=device))
        if int(table[-1]) != 0:  # the argument above, checked once
            raise AssertionError("exp2 table does not underflow at its span")
        _EXP2_TABLES[key] = table
    return _EXP2_TABLES[key]


def exp2_lookup(t: torch.Tensor) -> torch.Tensor:
    """``exp2_fixed(t)`` for Q16 t <= 0, bit for bit, by one gather from ``exp2_table``."""
    index = torch.neg(t).clamp_(max=EXP2_SPAN + 1).reshape(-1)
    return exp2_table(t.device).index_select(0, index).reshape(t.shape)


# exp2_fixed(t) = P(t mod 2^16) >> -(t >> 16) for t >= -31 * 2^16 (its definition: whole =
# t >> 16, frac = t - whole 2^16 = t & (2^16 - 1), P(frac) = the polynomial + 2^16), and 0 below
# (exp2_fixed clamps t at -31 * 2^16, where P(0) >> 31 = 0) — which the unclamped form also
# gives there, as P < 2^17 is shifted right by 32 or more. So a 2^16-entry table of P (int32,
# 256 KiB: it stays in cache, unlike the 8 MiB exp2_table) and a shift compute exp2_fixed.
_POW2_FRAC_TABLES: dict[str, torch.Tensor] = {}
_SOFTMAX_T_FLOOR = -47 * ONE  # the softmax's exponents: z >= -32 * 2^16, times log2(e) < 1.45


def pow2_frac_table(device: torch.device) -> torch.Tensor:
    """P(f) = exp2_fixed's 2^(f / 2^16) for f = 0..2^16 - 1, int32 (P in [2^16, 2^17),
    checked), computed once per device by exp2_fixed's own steps (``pow2_frac``)."""
    key = str(device)
    if key not in _POW2_FRAC_TABLES:
        table = pow2_frac(torch.arange(ONE, device=device))
        if int(table.max()) >= 1 << 17 or int(table.min()) < ONE:
            raise AssertionError("2^frac table out of [2^16, 2^17)")
        _POW2_FRAC_TABLES[key] = table.to(torch.int32)
    return _POW2_FRAC_TABLES[key]


def pow2_frac(frac: torch.Tensor) -> torch.Tensor:
    """exp2_fixed's polynomial 2^(frac / 2^16) in Q16 for 0 <= frac < 2^16 (its exact steps)."""
    inner = rshift_round_(frac * EXP2_C3, FRAC) + EXP2_C2
    inner = rshift_round_(frac * inner, FRAC) + EXP2_C1
    return rshift_round_(frac * inner, FRAC) + ONE


def exp2_softmax_(t: torch.Tensor) -> torch.Tensor:
    """exp2_fixed(t) for Q16 ``_SOFTMAX_T_FLOOR`` <= t <= 0 (the shift then stays below 48),
    bit for bit, from ``pow2_frac_table`` and a shift; t is a fresh tensor the caller gives
    up (it becomes the shift amount)."""
    p = pow2_frac_table(t.device).index_select(0, (t & (ONE - 1)).reshape(-1)).reshape(t.shape)
    t >>= FRAC
    t.neg_()  # -whole, 0..47
    return p >> t


def softmax_lastdim(
    x: torch.Tensor, mask: torch.Tensor | None = None, *, inplace: bool = False
) -> torch.Tensor:
    """Softmax over the last dimension of Q16 ``x`` as Q16 probabilities, integer only;
    entries where ``mask`` (broadcast to x) is False get probability exactly 0. Every row must
    keep at least one entry. ``inplace``: x is a fresh tensor the caller gives up (a product);
    its storage is reused for the intermediates — the same integers, each step below being
    the out-of-place formula's operation written over a tensor nothing else reads."""
    x_max = maxabs(x)
    require_below(x_max, SOFTMAX_INPUT_LIMIT, "softmax", "max|x|")
    hidden = None if mask is None else ~mask
    if hidden is None:
        z = x if inplace else x.clone()
    elif inplace:
        z = x.masked_fill_(hidden, -SOFTMAX_INPUT_LIMIT)
    else:
        z = x.masked_fill(hidden, -SOFTMAX_INPUT_LIMIT)
    z -= z.amax(dim=-1, keepdim=True)
    z.clamp_(min=_Z_FLOOR)  # <= 0
    # rshift_round(z LOG2E, 16) in one fused pass (scale_round); z LOG2E >= -32 * 94548 >
    # -47 * 2^16
    exps = exp2_softmax_(scale_round(z, LOG2E_Q16, FRAC, out=z))
    # Masked entries are already 0 unless a row's max could lie within 32 of -2^61: every
    # unmasked x >= -max|x|, so when max|x| < 2^61 - 32 * 2^16 a masked entry's z is
    # -2^61 - rowmax < -32 * 2^16, clamped to exactly -32 * 2^16, and exp2_lookup of
    # rshift_round(-32 * 2^16 * LOG2E, 16) (below -46 * 2^16) is 0. Only then is the fill
    # skipped: the same integers either way.
    if hidden is not None and x_max >= SOFTMAX_INPUT_LIMIT + _Z_FLOOR:
        exps.masked_fill_(hidden, 0)
    total = exps.sum(dim=-1, keepdim=True)
    # floor(E 2^16 / total) = floor((2 E 2^16 + 1) / (2 total)) by ``floor_div_odd``
    # (E <= 2^16: the odd numerator is below 2^34 + 1 < 2^52; 2 total < 2^53)
    m = exps.to(torch.float64)
    m *= float(1 << (FRAC + 1))
    m += 1.0
    return floor_div_odd(m, (2 * total).to(torch.float64))


def softmax_backward(p: torch.Tensor, grad_p: torch.Tensor) -> torch.Tensor:
    """dS = P * (dP - rowsum(dP * P)) over the last dimension, Q16 (see the module docstring).
    ``grad_p`` must be a fresh tensor the caller gives up: dS is written over it (the same
    integers as rshift_round(p * (grad_p - row), 16) out of place)."""
    require_below(maxabs(grad_p), SOFTMAX_GRAD_LIMIT, "softmax backward", "max|dP|")
    row = rshift_round_((grad_p * p).sum(dim=-1, keepdim=True), FRAC)
    grad_p -= row
    grad_p *= p
    return rshift_round_(grad_p, FRAC)


def _transpose(op: Operand) -> Operand:
    return Operand(op.t64.transpose(-2, -1), op.maxabs)


def operand(t: torch.Tensor) -> Operand:
    """``Operand.of(t)``: the same ``maxabs`` value by ``float_maxabs`` (max|v| = max(-min v,
    max v) for the float64 values of integers below 2^53, exactly: negation and comparison
    are exact). Non-empty t."""
    t64 = t.to(torch.float64)
    return Operand(t64, float_maxabs(t64))  # the same value as aminmax's max(-lo, hi)


def head_operands(qkv: torch.Tensor, heads: int) -> tuple[Operand, Operand, Operand]:
    """The q, k, v operands (B, h, T, dh) of a (B, T, 3d) int64 ``[q | k | v]`` tensor, head
    j taking columns j dh .. (j+1) dh - 1 of its third: one strided copy into a contiguous
    float64 (3, B, h, T, dh) buffer and one abs-max over each third — the same t64 values and
    the same maxabs (abs().amax() of the same float64 values) as ``Operand.of`` of each
    third's heads."""
    b, t, three_d = qkv.shape
    dh = three_d // (3 * heads)
    out = torch.empty((3, b, heads, t, dh), dtype=torch.float64, device=qkv.device)
    out.copy_(qkv.view(b, t, 3, heads, dh).permute(2, 0, 3, 1, 4))
    # max(-min, max) per third: the same values as abs().amax(dim=1) (exact negation and
    # comparison; no written abs copy: ~34 -> ~30 us; aminmax along a dim is ~5x slower)
    flat = out.view(3, -1)
    m = torch.maximum(flat.amin(dim=1).neg_(), flat.amax(dim=1))
    return Operand(out[0], m[0]), Operand(out[1], m[1]), Operand(out[2], m[2])


class AttentionSaved(NamedTuple):
    q: Operand
    k: Operand
    v: Operand
    p: Operand  # probabilities, Q16, (B, h, T, T)
    scale: int
    p_int: torch.Tensor  # the same probabilities as int64


def _as_operand(t: Operand | torch.Tensor) -> Operand:
    return t if isinstance(t, Operand) else operand(t)


def attention_forward(
    matmul: ExactMatmul,
    q: Operand | torch.Tensor,
    k: Operand | torch.Tensor,
    v: Operand | torch.Tensor,
    where: str,
) -> tuple[torch.Tensor, AttentionSaved]:
    """O = softmax(q k^T / sqrt(dh), causal) v for q, k, v of shape (B, h, T, dh), Q16
    (int64 tensors, or their ``Operand``s, e.g. from ``head_operands``)."""
    q_op, k_op, v_op = _as_operand(q), _as_operand(k), _as_operand(v)
    t, dh = q_op.t64.shape[-2], q_op.t64.shape[-1]
    scale = attention_scale(dh)
    # S = rshift_round(rshift_round(q k^T, 16) * C, 16), each step in place on the fresh
    # product (|S16 C| < 2^53, module docstring)
    scores = rshift_round_(matmul(q_op, _transpose(k_op), f"{where}.scores"), FRAC)
    scores = scale_round(scores, scale, FRAC, out=scores)
    p = softmax_lastdim(scores, causal_mask(t, scores.device), inplace=True)
    p_op = Operand.of(p, nonnegative=True)
    out = rshift_round_(matmul(p_op, v_op, f"{where}.values"), FRAC)
    return out, AttentionSaved(q_op, k_op, v_op, p_op, scale, p)


def attention_backward(
    matmul: ExactMatmul, saved: AttentionSaved, grad_out: torch.Tensor, where: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) for the gradient ``grad_out`` of O."""
    g_op = operand(grad_out)
    dv = rshift_round_(matmul(_transpose(saved.p), g_op, f"{where}.grad_v"), FRAC)
    dp = rshift_round_(matmul(g_op, _transpose(saved.v), f"{where}.grad_p"), FRAC)
    ds = softmax_backward(saved.p_int, dp)
    ds_op = operand(scale_round(ds, saved.scale, FRAC, out=ds))  # |dS C| < 2^61 (docstring)
    dq = rshift_round_(matmul(ds_op, saved.k, f"{where}.grad_q"), FRAC)
    dk = rshift_round_(matmul(_transpose(ds_op), saved.q, f"{where}.grad_k"), FRAC)
    return dq, dk, dv


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """float64 causal attention of real-valued q, k, v (B, h, T, dh), c = 1/sqrt(dh)
    (differentiable)."""
    t, dh = q.shape[-2], q.shape[-1]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(dh)
    scores = scores.masked_fill(~causal_mask(t, q.device), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def softmax_reference(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """float64 softmax over the last dimension of real-valued x (masked entries -> 0)."""
    if mask is not None:
        x = x.masked_fill(~mask, float("-inf"))
    return torch.softmax(x, dim=-1)

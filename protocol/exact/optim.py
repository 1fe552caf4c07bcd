"""The optimizers of the exact VM, shared by every model family: SGD with momentum and AdamW.

Both take the gradients of the loss *summed* over the step's N loss terms (N = B examples, or
B x T tokens; a power of two, ``JobSpec.loss_terms``) and apply the mean-loss update, the 1/N
folded into a shift — the usual mean-loss optimizer computed with one rounding rule:

    sgd    v <- round(mu v / 2^16) + g ;  w <- w - round(v / 2^(log2 N - lr_log2))
    adamw  see ``adamw_update`` (and docs/protocol.md, "AdamW in fixed point")
"""

from __future__ import annotations

import math

import torch

from protocol.errors import OverflowBoundError
from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    isqrt_int64,
    max_abs,
    pow_fixed,
    round_div_int,
    rshift_round_,
)
from protocol.exact.ops.norm import floor_div_odd
from protocol.exact.state import State
from protocol.layout import STEP_KEY, adam_m_name, adam_v_name, momentum_name
from protocol.spec import JobSpec


def update(spec: JobSpec, state: State, i: int, grads: dict[str, torch.Tensor]) -> State:
    """State i+1 from state i and step i's summed-loss gradients, by ``spec.optimizer``."""
    if spec.optimizer.name == "adamw":
        return adamw_update(spec, state, i, grads)
    return sgd_update(spec, state, grads)


def sgd_update(spec: JobSpec, state: State, grads: dict[str, torch.Tensor]) -> State:
    """SGD with momentum: v <- round(mu v / 2^16) + g ; w <- w - round(v / 2^(log2 N - lr_log2)).

    Bounds: |v| < 2^40 on entry, mu < 2^16, so mu v < 2^56 and round(mu v / 2^16) < 2^40;
    every gradient is below 2^62 — a weight's is a requantized exact product (< 2^37), a sum
    (bias, embedding, gain) is checked against 2^62 where it is formed (``check_sum_bound``) —
    so the new |v| < 2^62 + 2^40, its rounding adds at most 2^61, and |w| < 2^40 minus it stays
    inside int64. (The next step's range check skips a state past 2^40.)

    Passes (each weight-sized tensor is read or written once per line, two fresh outputs):

        v' = 2^15 + mu v           one fused add (``alpha=mu``), fresh
        v' >>= 16 ; v' += g        in place: v' = rshift_round(mu v, 16) + g
        u  = v' + half_s           fresh (half_s = 2^(s-1), or 0 when s = 0)
        u >>= s ; u = w - u        in place (``out=u``): w - rshift_round(v', s)

    the same integers as the plain formula, term by term: 2^15 + mu v is computed exactly
    (< 2^57) as the pair add-then-shift of ``rshift_round`` would, and ``torch.sub(w, u,
    out=u)`` is elementwise with its output exactly overlapping one input (TensorIterator
    reads each element before writing it)."""
    mu = spec.optimizer.momentum_q16
    shift = spec.loss_terms_log2 - spec.optimizer.lr_log2
    half16 = 1 << (FRAC - 1)
    half_s = (1 << (shift - 1)) if shift else 0
    new_state: State = {STEP_KEY: state[STEP_KEY] + 1}
    for name, g in grads.items():
        old_v = state[momentum_name(name)]
        velocity = torch.add(old_v.new_full((), half16), old_v, alpha=mu)
        velocity >>= FRAC
        velocity += g
        new_state[momentum_name(name)] = velocity
        step_ = velocity + half_s
        step_ >>= shift
        new_state[name] = torch.sub(state[name], step_, out=step_)
    return new_state


ADAM_V_FRAC = 32  # v: the squared *mean* gradient (g / B)^2 in Q32, exact before averaging
ADAM_SQRT_FRAC = 20  # sqrt(v), epsilon and the denominator are Q20
BIAS_FRAC = 30  # beta^t and 1 - beta^t are carried in Q30
_MH_LIMIT = 1 << 55  # max|m| * k1 must stay below this (so |m_hat| < 2^40)


def adam_grad_limit(spec: JobSpec) -> int:
    """|g| (Q16, summed over the step's N loss terms) at or past which an AdamW step is skipped:
    g^2 must stay below 2^62 and the squared mean gradient (Q32) below 2^40, i.e. |g / N| < 16."""
    return min(1 << 31, 1 << (ADAM_V_FRAC - 2 * FRAC + 20 + spec.loss_terms_log2))


def adamw_scalars(spec: JobSpec, i: int) -> tuple[int, int]:
    """Step i's bias corrections as Q16 integers: (k1, k2) with k1 = round(1 / (1 - beta1^t))
    and k2 = floor(1 / sqrt(1 - beta2^t)), t = i + 1. beta^t is ``pow_fixed`` in Q30; 1 - beta^t
    is clamped below at 1 - beta (its true minimum), so k1 <= 2^32 and k2 <= 2^24."""
    return bias_corrections(spec.optimizer.beta1_q16, spec.optimizer.beta2_q16, i)


def bias_corrections(beta1_q16: int, beta2_q16: int, i: int) -> tuple[int, int]:
    """``adamw_scalars`` from the Q16 betas alone (an operator of a step's trace has its
    attributes and the step counter, not the spec: ``protocol.exact.trace``)."""
    t = i + 1
    one = 1 << BIAS_FRAC
    scale = BIAS_FRAC - FRAC
    b1 = beta1_q16 << scale
    b2 = beta2_q16 << scale
    bc1 = max(one - pow_fixed(b1, t, BIAS_FRAC), one - b1)
    bc2 = max(one - pow_fixed(b2, t, BIAS_FRAC), one - b2)
    k1 = round_div_int(1 << (BIAS_FRAC + FRAC), bc1)
    k2 = math.isqrt((1 << (BIAS_FRAC + 2 * FRAC)) // bc2)
    return k1, k2


def adamw_update(spec: JobSpec, state: State, i: int, grads: dict[str, torch.Tensor]) -> State:
    """AdamW on the summed-loss gradients g (Q16), exactly — mean-loss AdamW: m is kept for the
    summed gradient (the 1/N is applied in the division), v for the mean gradient g / N, N = 2^b
    the step's loss terms (``JobSpec.loss_terms``). With b1, b2 the Q16 betas, k1, k2 from
    ``adamw_scalars``:

        m  <- round((b1 m + (2^16 - b1) g) / 2^16)                        Q16, summed
        v  <- round((b2 v + (2^16 - b2) round(g^2 / 2^2b)) / 2^16)        Q32, mean
        mh  = round(m k1 / 2^16)                                           m / (1 - b1^t)
        den = round(isqrt(max(v, 0) 2^8) k2 / 2^16) + 2^(eps_log2 + 20)   Q20, mean
        w  <- w - round(w / 2^-(lr_log2 + wd_log2)) - div_round(mh 2^(20 + lr_log2), den 2^b)

    Rounding: ``rshift_round`` for powers of two, ``div_round`` (the same rule, half up) for the
    one true division, ``isqrt_int64`` (exact floor) for the square root. When
    ``_float_division_fits`` (a bound from max|m|, k1, k2 and v < 2^40, no extra pass), the
    root, den and the division run in float64 with exact floors (``_float_quotient``, proof
    there); otherwise in int64. The same integers either way.

    Bounds (every int64 intermediate < 2^62), given |w|, |m|, |v| < 2^40 (checked on entry):
    |g| < ``adam_grad_limit`` <= 2^31 is checked here (else OverflowBoundError: the step is
    skipped), so b1 m < 2^56, (2^16 - b1) g < 2^47, g^2 < 2^62 and round(g^2 / 2^2b) < 2^40,
    so b2 v < 2^56; the new m and v are convex combinations, at most 2^40; max(v, 0) 2^8 <=
    2^48, so isqrt is in range and <= 2^24; times k2 <= 2^24 is < 2^49; den >= 1 and < 2^34,
    den 2^b < 2^56 (b = log2 N <= 22: 4,096 sequences of 1,024 tokens). The product m k1
    (k1 <= 2^32) is checked at run time: max|m| k1 < 2^55 or
    OverflowBoundError, so |mh| < 2^40 and the numerator mh 2^(20 + lr_log2) < 2^60, and
    div_round's 2a + b < 2^61 + 2^56. The decay term is at most |w|; the update may leave |w| past
    2^40 (< 2^61), which the next step's range check turns into a skipped step.
    """
    opt = spec.optimizer
    b1, b2 = opt.beta1_q16, opt.beta2_q16
    k1, k2 = adamw_scalars(spec, i)
    batch_log2 = spec.loss_terms_log2
    groups = _flat_groups(grads)
    flat_g = [_joined([grads[n] for n in names]) for names in groups]
    grad_max = max_abs(flat_g)
    if grad_max >= adam_grad_limit(spec):
        raise OverflowBoundError("adamw gradient", float(grad_max), "max|g|", "the g^2 limit")
    half = 1 << (FRAC - 1)
    flat_m: list[torch.Tensor] = []
    for names, g in zip(groups, flat_g, strict=True):
        # (b1 m + (2^16 - b1) g + 2^15) >> 16: rshift_round_ of the same exact sum.
        old = _joined([state[adam_m_name(n)] for n in names])
        m = torch.add(old.new_full((), half), old, alpha=b1)
        m.add_(g, alpha=ONE - b1)
        m >>= FRAC
        flat_m.append(m)
    m_max = max_abs(flat_m)
    if m_max * k1 >= _MH_LIMIT:
        raise OverflowBoundError("adamw first moment", float(m_max * k1), "max|m|*k1", "2^55")
    eps = 1 << (opt.eps_log2 + ADAM_SQRT_FRAC)
    num_shift = ADAM_SQRT_FRAC + opt.lr_log2
    root_shift = 2 * ADAM_SQRT_FRAC - ADAM_V_FRAC
    decay_shift = None
    if opt.weight_decay_log2 is not None:
        decay_shift = -(opt.lr_log2 + opt.weight_decay_log2)
    float_division = _float_division_fits(m_max, k1, k2, num_shift, eps, batch_log2)
    new_state: State = {STEP_KEY: state[STEP_KEY] + 1}
    for names, g, m in zip(groups, flat_g, flat_m, strict=True):
        g2 = rshift_round_(g * g, 2 * batch_log2 + 2 * FRAC - ADAM_V_FRAC)
        # (b2 v + (2^16 - b2) g2 + 2^15) >> 16: the same exact sum as above.
        old = _joined([state[adam_v_name(n)] for n in names])
        v = torch.add(old.new_full((), half), old, alpha=b2)
        v.add_(g2, alpha=ONE - b2)
        v >>= FRAC
        # div_round(a, den) = floor((2a + den) / 2den) with a = round(m k1 / 2^16) 2^num_shift:
        # 2a is the same rounding shifted one place further.
        quotient = torch.add(m.new_full((), half), m, alpha=k1)
        quotient >>= FRAC
        if float_division:
            quotient = _float_quotient(quotient, v, k2, num_shift, eps, batch_log2)
        else:
            root = torch.clamp(v, min=0)
            root <<= root_shift
            root = isqrt_int64(root, below=1 << 48)  # v < 2^40 (docstring): input < 2^48
            # den = (round(root k2 / 2^16) + eps) 2^b, in place on the fresh root.
            den = torch.add(root.new_full((), half), root, alpha=k2, out=root)
            den >>= FRAC
            den += eps
            den <<= batch_log2
            quotient <<= num_shift + 1
            quotient += den
            den <<= 1
            quotient = torch.div(quotient, den, rounding_mode="floor", out=quotient)
        shapes = [grads[n].shape for n in names]
        if decay_shift is None:
            # w - quotient per tensor, from its slice of the joined quotient: each result is
            # its own fresh tensor (no joined weight copy, no split), the same elementwise
            # differences.
            new_weights = [
                torch.sub(state[n], q_n.view(state[n].shape))
                for n, q_n in zip(names, _slices(quotient, shapes), strict=True)
            ]
        else:
            weight = _joined([state[n] for n in names])
            # weight - rshift_round(weight, d) - quotient, one fresh tensor.
            new_weight = weight + ((1 << (decay_shift - 1)) if decay_shift else 0)
            new_weight >>= decay_shift
            torch.sub(weight, new_weight, out=new_weight)
            new_weight -= quotient
            new_weights = _parts(new_weight, shapes)
        for n, w_n, m_n, v_n in zip(
            names,
            new_weights,
            _parts(m, shapes),
            _parts(v, shapes),
            strict=True,
        ):
            new_state[n] = w_n
            new_state[adam_m_name(n)] = m_n
            new_state[adam_v_name(n)] = v_n
    return new_state


def _float_quotient(
    mh: torch.Tensor, v: torch.Tensor, k2: int, num_shift: int, eps: int, batch_log2: int
) -> torch.Tensor:
    """div_round(mh 2^num_shift, den) with den = (round(isqrt(max(v, 0) 2^8) k2 / 2^16) + eps)
    2^b, for ``mh`` (the caller's fresh tensor, overwritten) and v, when
    ``_float_division_fits``: the root, den and the division in float64, exactly — the same
    integers as the int64 branch of ``adamw_update``.

    Root: x = max(v, 0) 2^8 is an integer below 2^48 (v < 2^40), exact in float64 (clamp and a
    power-of-two product are exact). floor(sqrt(x)) is s - 1 or s (``isqrt_int64``'s proof
    for x < 2^50), and the one upward correction r += [(r + 1)^2 <= x] makes it s: (r + 1)^2
    <= 2^50 is exact, so the comparison is the integer one.
    den: r k2 + 2^15 < 2^24 2^24 + 2^15 is exact (one rounding at most, of an exact value);
    times 2^-16 is exact (a power of two, no underflow: an integer or a dyadic above 2^-16),
    its floor is (r k2 + 2^15) >> 16; + eps and times 2^(b + 1) stay integers below 2^52
    (``_float_division_fits``: 2 max den + 1 < 2^52), so d = 2den exactly.
    Quotient: ``floor_div_odd`` of the odd 4a + 2den + 1 (a = mh 2^num_shift, |4a| < 2^52:
    converts exactly; each partial sum below 2^52, exact) by 4den — the identity and bound of
    ``_float_division_fits``."""
    x = v.to(torch.float64)
    x.clamp_(min=0.0)
    x *= float(1 << (2 * ADAM_SQRT_FRAC - ADAM_V_FRAC))
    r = torch.sqrt(x)
    r.floor_()
    t = r + 1.0
    t *= t
    r += t <= x  # r += 1 where (r + 1)^2 <= x
    del t, x
    d = torch.add(r.new_full((), float(1 << (FRAC - 1))), r, alpha=k2, out=r)
    d *= 2.0**-FRAC
    d.floor_()
    d += float(eps)
    d *= float(1 << (batch_log2 + 1))  # 2den
    mh <<= num_shift + 2
    numerator = mh.to(torch.float64)
    numerator += d
    numerator += 1.0
    d *= 2.0  # 4den
    return floor_div_odd(numerator, d)


def _float_division_fits(
    m_max: int, k1: int, k2: int, num_shift: int, eps: int, batch_log2: int
) -> bool:
    """Whether AdamW's division may run in float64 (``floor_div_odd``), from bounds known
    before it — no extra pass. Its odd numerator is 4a + 2den + 1 and its divisor 4den (the
    identity floor(N / D) = floor((2N + 1) / 2D) with N = 2a + den, D = 2den), integers, and
    floor_div_odd is exact while |4a + 2den + 1| < 2^52 and 2 <= 4den < 2^53:

        |a| = |round(m k1 / 2^16)| 2^num_shift <= ((m_max k1 + 2^15) >> 16) 2^num_shift
              (|m k1| <= m_max k1 and a floor is monotone: also for the most negative m);
        den = (round(root k2 / 2^16) + eps) 2^b <= (((2^24 k2 + 2^15) >> 16) + eps) 2^b
              (v < 2^40, so max(v, 0) 2^8 < 2^48 and root = isqrt(.) < 2^24); den >= 1.

    The bound checked is 4 max|a| + 2 max den + 1 < 2^52, which also gives 4den < 2^53.
    Otherwise the int64 floor division, the same integers."""
    if num_shift + 2 < 0:
        return False
    a_max = ((m_max * k1 + (1 << (FRAC - 1))) >> FRAC) << num_shift
    den_max = ((((1 << 24) * k2 + (1 << (FRAC - 1))) >> FRAC) + eps) << batch_log2
    return 4 * a_max + 2 * den_max + 1 < 1 << 52


_FLAT_BELOW = 1 << 16  # tensors with fewer elements are updated together


def _flat_groups(grads: dict[str, torch.Tensor]) -> list[list[str]]:
    """The tensors AdamW updates in one set of elementwise ops: each large tensor alone, all
    small ones (below ``_FLAT_BELOW`` elements) joined — every operation of the update is
    elementwise with scalar constants, so an element's result does not depend on its
    neighbours and joining changes no value; it saves ~40 op dispatches per small tensor."""
    small = [n for n, g in grads.items() if g.numel() < _FLAT_BELOW]
    large = [[n] for n, g in grads.items() if g.numel() >= _FLAT_BELOW]
    return large + ([small] if len(small) > 1 else [[n] for n in small])


def _joined(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One tensor as it is; several flattened and concatenated (a copy, in order)."""
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat([t.reshape(-1) for t in tensors])


def _slices(flat: torch.Tensor, shapes: list[torch.Size]) -> list[torch.Tensor]:
    """``_joined``'s inverse as views of ``flat`` (no copy), in order."""
    if len(shapes) == 1:
        return [flat]
    return list(flat.split_with_sizes([math.prod(shape) for shape in shapes]))


def _parts(flat: torch.Tensor, shapes: list[torch.Size]) -> list[torch.Tensor]:
    """``_joined``'s inverse: the group's tensors, each its own fresh storage (a state's
    tensors must not share storage)."""
    if len(shapes) == 1:
        return [flat]
    outs = [flat.new_empty(math.prod(shape)) for shape in shapes]
    torch.split_with_sizes_copy(flat, [o.numel() for o in outs], out=outs)
    return [o.view(shape) for o, shape in zip(outs, shapes, strict=True)]

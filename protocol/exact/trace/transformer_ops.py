"""The transformer's operators of a step's trace (``protocol.exact.trace.transformer``).

Each operator runs the exact VM's own operator library (``protocol.exact.ops``) on its whole
inputs (``run``), and on the few input values one output element depends on (``element``): a
row-wise operator (the norm, the softmax and its backward) on one row, the scores on one row
of q and of k, an elementwise one on one value. The arithmetic is the same exact integer
arithmetic on fewer rows, so the values are the same. The norm's backward is
``rms_norm_backward`` one step an operator (``gain_mul`` for dn, then ``rms_mean_dot``,
``rms_center``, ``rms_norm_dx``), so that every check multiplies maxima of an operator's
inputs.

Checks. Every operator states its run-time checks (``checks``: ``registry.Check``, maxima of
its inputs times a constant below a limit), and ``run`` raises ``OverflowBoundError`` exactly
when one fails: the checks the library makes on the same tensors (where the library call
makes them itself, ``checks`` says which they are). A check on a subset of rows passes
whenever the whole tensor's does, so ``element`` needs none.

Layouts. Token rows (B T, features); heads (B, h, T, dh) cut from the qkv rows
(``split_heads``, also transposed to (B, h, dh, T) where a product reads a column) and put
back as rows (``merge_heads``). The gradients summed over the batch read one row of a
transposed (feature, B T) gradient.

Costs of one element (``reads``): one row (d, T) for the row-wise operators, two rows of dh
for ``attention_scores``, one value for the elementwise and layout ones, one transposed row
(B T) for the position gradient and two (the gradient's and the ids) for the token
embedding's, and for ``embed_tokens`` one column of the token table (V values: which row the
id selects is data, and a box is fixed by the index alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from protocol.exact.bounds import batch_rows
from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    ExactMatmul,
    Operand,
    div_round,
    rshift_round,
    rshift_round_,
    scale_round,
)
from protocol.exact.ops.activations import (
    GELU_GRAD_LIMIT,
    GELU_INPUT_LIMIT,
    gelu_backward,
    gelu_forward,
)
from protocol.exact.ops.attention import (
    SOFTMAX_GRAD_LIMIT,
    SOFTMAX_INPUT_LIMIT,
    causal_mask,
    softmax_backward,
    softmax_lastdim,
)
from protocol.exact.ops.embedding import EmbeddingSaved, embedding_backward
from protocol.exact.ops.norm import (
    RMS_FRAC,
    _div_round_by,
    rms_input_limit,
    rms_norm_forward,
)
from protocol.exact.trace.registry import (
    Box,
    Check,
    int_attr,
    point_box,
    register,
    row_box,
    whole,
)
from protocol.exact.transformer import _GRAD_INPUT_BOUND, _gelu_input_bound
from protocol.trace import OpNode

_LIMIT = 1 << 62
_EXACT = 1 << 53  # ExactMatmul's limit
Pieces = Sequence[torch.Tensor | None]
Shapes = Sequence[tuple[int, ...]]


def _piece(pieces: Pieces, j: int) -> torch.Tensor:
    piece = pieces[j]
    if piece is None:
        raise ValueError(f"input {j} is read by this element but its piece is missing")
    return piece


def _scalar(t: torch.Tensor) -> int:
    return int(t.reshape(-1)[0].item())


def _require(checks: Sequence[Check], inputs: Sequence[torch.Tensor]) -> None:
    """Raise ``OverflowBoundError`` at the first of ``checks`` that fails on ``inputs``."""
    for check in checks:
        bound = check.bound(inputs)
        if bound.fails():
            raise bound.error()


def _column_box(shape: tuple[int, ...], column: int) -> Box:
    """Every row's value in ``column`` of a 2-D tensor."""
    return ((0, shape[0]), (column, column + 1))


# --- embedding ------------------------------------------------------------------------------


class EmbedTokens:
    """x[b T + t] = token[ids[b, t]] + position[t], rows (B T, d) (``ops.embedding``: exact
    copies and one exact add, no check). Inputs: the token table (V, d), the position table
    (T, d), the ids (B, T)."""

    kind = "embed_tokens"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return ()  # none: exact copies and adds

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        token, position, ids = inputs
        t = ids.shape[1]
        return (token[ids] + position[:t]).reshape(-1, token.shape[1])

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        row, c = index
        b, t = divmod(row, shapes[2][1])
        return (_column_box(shapes[0], c), point_box([t, c]), point_box([b, t]))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        column, position, ids = _piece(pieces, 0), _piece(pieces, 1), _piece(pieces, 2)
        return int(column[_scalar(ids), 0].item()) + _scalar(position)


class EmbeddingGrad:
    """grad_table[v, c] = sum of gx over the positions whose id is v, from gx^T (d, B T)
    (``embedding_backward``: its check max|g| N < 2^62). attrs: rows (V)."""

    kind = "embedding_grad"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (_embedding_sum_check(inputs[0]),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        g_t, ids = inputs
        saved = EmbeddingSaved(ids, int_attr(node, "rows"))
        return embedding_backward(saved, g_t.T)[0]

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        _, c = index
        return (row_box(shapes[0], [c]), whole(shapes[1]))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        v, _ = index
        saved = EmbeddingSaved(_piece(pieces, 1), int_attr(node, "rows"))
        return int(embedding_backward(saved, _piece(pieces, 0).T)[0][v, 0].item())


class PositionGrad:
    """grad_position[t, c] = sum over the batch's windows b of gx[b, t, c], from gx^T
    (d, B T) (the transformer's ``_position_grad``: every window's positions are 0..T-1),
    with the token embedding's check on the same gx (max|g| B T < 2^62). attrs: context."""

    kind = "position_grad"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (_embedding_sum_check(inputs[0]),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        _require(self.checks(node, inputs), inputs)
        g_t = inputs[0]
        t = int_attr(node, "context")
        return g_t.reshape(g_t.shape[0], -1, t).sum(dim=1).T.contiguous()

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        _, c = index
        return (row_box(shapes[0], [c]),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        t, _ = index
        row = _piece(pieces, 0).reshape(-1, int_attr(node, "context"))
        return int(row[:, t].sum().item())


def _embedding_sum_check(g_t: torch.Tensor) -> Check:
    """``embedding_backward``'s check on gx^T (d, N): max|g| N < 2^62."""
    rows = batch_rows(int(g_t.shape[1]))
    return Check("embedding backward", "max|g|*N", (0,), (), rows, _LIMIT, False)


# --- RMS norm -------------------------------------------------------------------------------

_NORM_BACK = "rms norm backward"
_T_LIMIT = 1 << 57


def _input_check(d: int, source: int) -> Check:
    """The norm's check on its input x: max|x| < ``rms_input_limit(d)``."""
    return Check("rms norm", "max|x|", (source,), (), 1, rms_input_limit(d), False)


def _normalized(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, r) of ``rms_norm_forward`` for rows x: run with gain 1 (2^16), whose y is n
    itself and whose gain check, max|n| 2^16 < 2^62, always passes (|n| <= sqrt(d) 2^16 + 1:
    a row's value is at most its root sum of squares), so the only check is the norm's own
    max|x| < ``rms_input_limit``."""
    ones = torch.full((x.shape[-1],), ONE, dtype=torch.int64, device=x.device)
    _, saved = rms_norm_forward(x, ones)
    return saved.n, saved.r


class RmsNorm:
    """n = x / rms(x) over the last dimension, Q16 (``ops.norm``; row-wise)."""

    kind = "rms_norm"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (_input_check(int(inputs[0].shape[-1]), 0),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return _normalized(inputs[0])[0]

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (row_box(shapes[0], index[:-1]),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return _scalar(_normalized(_piece(pieces, 0))[0][..., index[-1]])


class GainMul:
    """y = rshift_round(x gain, 16), gain (d,) along the last dimension: the norm's output
    (x = n) and its backward's dn (x = dy), each with its check max|x| max|gain| < 2^62."""

    kind = "gain_mul"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (Check("rms norm", "max|x|*max|gain|", (0, 1), (), 1, _LIMIT, False),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        _require(self.checks(node, inputs), inputs)
        x, gain = inputs
        return rshift_round_(x * gain, FRAC)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box(index), point_box(index[-1:]))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        product = _scalar(_piece(pieces, 0)) * _scalar(_piece(pieces, 1))
        return (product + (1 << (FRAC - 1))) >> FRAC


class RmsMeanDot:
    """c = div_round(sum_j dn_j n_j, d 2^16) per row: mean(dn n), Q16, shape (rows,)
    (``rms_norm_backward``'s c; its check max|dn| max|n| d < 2^62)."""

    kind = "rms_mean_dot"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        d = int(inputs[0].shape[-1])
        return (Check(_NORM_BACK, "max|dn|*max|n|*d", (0, 1), (), d, _LIMIT, False),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        _require(self.checks(node, inputs), inputs)
        return _mean_dot(inputs[0], inputs[1])

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (row_box(shapes[0], index), row_box(shapes[1], index))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return _scalar(_mean_dot(_piece(pieces, 0), _piece(pieces, 1)))


def _mean_dot(dn: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    dot = (dn * n).sum(dim=-1)
    return _div_round_by(dot, n.shape[-1] << FRAC)


class RmsCenter:
    """t = dn 2^16 - n c, Q32, exact (``rms_norm_backward``'s t; its check max|n| max|c|
    < 2^62). Inputs dn, n (rows, d) and c (rows,)."""

    kind = "rms_center"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (Check(_NORM_BACK, "max|n|*max|c|", (1, 2), (), 1, _LIMIT, False),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        _require(self.checks(node, inputs), inputs)
        return _centered(*inputs)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box(index), point_box(index), point_box(index[:1]))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        t = _centered(_piece(pieces, 0), _piece(pieces, 1), _piece(pieces, 2).reshape(-1))
        return _scalar(t)


def _centered(dn: torch.Tensor, n: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    t = n * c[:, None]
    return torch.sub(dn << FRAC, t, out=t)


class RmsNormDx:
    """dx = div_round(t 2^4, r) with r the row's rms (Q20) recomputed from x: the norm's
    input gradient (``rms_norm_backward``'s last step, in its int64 form, whose integers its
    float64 fast path equals; its check max|t| < 2^57, and the forward's on x, repeated)."""

    kind = "rms_norm_dx"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (
            Check(_NORM_BACK, "max|t|", (0,), (), 1, _T_LIMIT, False),
            _input_check(int(inputs[1].shape[-1]), 1),
        )

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        _require(self.checks(node, inputs), inputs)
        return _dx(inputs[0], inputs[1])

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box(index), row_box(shapes[1], index[:1]))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return _scalar(_dx(_piece(pieces, 0), _piece(pieces, 1)))


def _dx(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    _, r = _normalized(x)
    return div_round(t << (RMS_FRAC - FRAC), r)


class RmsGainGrad:
    """grad_gain[c] = rshift_round(sum over rows of dy n, 16) from dy^T and n^T (d, rows),
    with ``rms_norm_backward``'s check max|dy| max|n| rows < 2^62."""

    kind = "rms_gain_grad"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        rows = batch_rows(int(inputs[1].shape[1]))
        return (Check(_NORM_BACK, "max|dy|*max|n|*rows", (0, 1), (), rows, _LIMIT, False),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        _require(self.checks(node, inputs), inputs)
        dy_t, n_t = inputs
        return rshift_round_((dy_t * n_t).sum(dim=1), FRAC)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (row_box(shapes[0], index), row_box(shapes[1], index))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        total = (_piece(pieces, 0) * _piece(pieces, 1)).sum().reshape(1)
        return _scalar(rshift_round(total, FRAC))


# --- attention ------------------------------------------------------------------------------


class SplitHeads:
    """One part of token rows (B T, parts d) in head layout: (B, h, T, dh), or (B, h, dh, T)
    with ``transposed``; head j of part p is columns p d + j dh .. p d + (j+1) dh - 1 (the
    qkv output's [q | k | v], ``ops.attention.head_operands``). attrs: context (T), heads,
    part, width (d), transposed."""

    kind = "split_heads"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return ()  # none: exact copies and adds

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = inputs[0]
        t, heads = int_attr(node, "context"), int_attr(node, "heads")
        width, part = int_attr(node, "width"), int_attr(node, "part")
        part_view = x[:, part * width : (part + 1) * width]
        heads_view = part_view.reshape(x.shape[0] // t, t, heads, width // heads)
        order = (0, 2, 3, 1) if int_attr(node, "transposed") else (0, 2, 1, 3)
        return heads_view.permute(order).contiguous()

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        b, head, i, j = index
        t, e = (j, i) if int_attr(node, "transposed") else (i, j)
        width = int_attr(node, "width")
        dh = width // int_attr(node, "heads")
        row = b * int_attr(node, "context") + t
        return (point_box([row, int_attr(node, "part") * width + head * dh + e]),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return _scalar(_piece(pieces, 0))


class MergeHeads:
    """Head-layout tensors (B, h, T, dh), k of them, side by side as token rows (B T, k d):
    input p at columns p d + j dh + e (the inverse of ``split_heads``)."""

    kind = "merge_heads"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return ()  # none: exact copies and adds

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = [x.transpose(1, 2).reshape(x.shape[0] * x.shape[2], -1) for x in inputs]
        return torch.cat(parts, dim=-1)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        row, column = index
        _, heads, context, dh = shapes[0]
        b, t = divmod(row, context)
        part, rest = divmod(column, heads * dh)
        head, e = divmod(rest, dh)
        return tuple(point_box([b, head, t, e]) if p == part else None for p in range(len(shapes)))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return _scalar(next(p for p in pieces if p is not None))


def _scores(q: torch.Tensor, k: torch.Tensor, scale: int, where: str) -> torch.Tensor:
    """``attention_forward``'s S: rshift_round(rshift_round(q k^T, 16) C, 16) by its own
    ``ExactMatmul`` product and check, in place on the fresh product."""
    k_op = Operand.of(k)
    k_t = Operand(k_op.t64.transpose(-2, -1), k_op.maxabs)
    scores = rshift_round_(ExactMatmul()(Operand.of(q), k_t, where), FRAC)
    return scale_round(scores, scale, FRAC, out=scores)


class AttentionScores:
    """S = rshift_round(rshift_round(q k^T, 16) C, 16) per (window, head), C the scale
    (``attention_forward``; its check max|q| max|k| dh < 2^53). attrs: scale."""

    kind = "attention_scores"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        dh = int(inputs[0].shape[-1])
        return (Check(node.label, "max|a|*max|b|*K", (0, 1), (), dh, _EXACT, True),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return _scores(inputs[0], inputs[1], int_attr(node, "scale"), node.label)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        b, head, i, j = index
        return (row_box(shapes[0], [b, head, i]), row_box(shapes[1], [b, head, j]))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        q, k = _piece(pieces, 0).reshape(1, -1), _piece(pieces, 1).reshape(1, -1)
        return _scalar(_scores(q, k, int_attr(node, "scale"), "element"))


class CausalSoftmax:
    """P = the masked integer softmax of S's rows, key j <= query i (``softmax_lastdim``;
    its check max|S| < 2^61)."""

    kind = "causal_softmax"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (Check("softmax", "max|x|", (0,), (), 1, SOFTMAX_INPUT_LIMIT, False),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        s = inputs[0]
        return softmax_lastdim(s, causal_mask(s.shape[-1], s.device))

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (row_box(shapes[0], index[:-1]),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        row = _piece(pieces, 0).reshape(1, -1)
        i, j = index[-2:]
        mask = causal_mask(row.shape[-1], row.device)[i : i + 1]
        return _scalar(softmax_lastdim(row, mask)[0, j])


def _softmax_grad(p: torch.Tensor, grad_p: torch.Tensor, scale: int) -> torch.Tensor:
    ds = softmax_backward(p, grad_p.clone())
    return scale_round(ds, scale, FRAC, out=ds)


class AttentionSoftmaxBackward:
    """dS16 = rshift_round(softmax_backward(P, dP) C, 16), row-wise (``attention_backward``;
    its check max|dP| < 2^44). attrs: scale."""

    kind = "attention_softmax_backward"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (Check("softmax backward", "max|dP|", (1,), (), 1, SOFTMAX_GRAD_LIMIT, False),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return _softmax_grad(inputs[0], inputs[1], int_attr(node, "scale"))

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        lead = index[:-1]
        return (row_box(shapes[0], lead), row_box(shapes[1], lead))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        p, dp = _piece(pieces, 0).reshape(1, -1), _piece(pieces, 1).reshape(1, -1)
        return _scalar(_softmax_grad(p, dp, int_attr(node, "scale"))[0, index[-1]])


# --- elementwise and the loss ---------------------------------------------------------------


class ResidualAdd:
    """x + y, elementwise (a residual stream and a branch; no check: the transformer's
    module docstring bounds both below 2^54)."""

    kind = "residual_add"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return ()  # none: exact copies and adds

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return inputs[0] + inputs[1]

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box(index), point_box(index))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return _scalar(_piece(pieces, 0)) + _scalar(_piece(pieces, 1))


def _gelu_bias_check() -> Check:
    """``gelu_forward``'s check on the transformer's bound of a linear output z,
    2^37 + 1 + max|bias| < 2^44 (``_gelu_input_bound``): max|bias| < 2^44 - 2^37 - 1."""
    limit = GELU_INPUT_LIMIT - _gelu_input_bound(torch.zeros(1, dtype=torch.int64))
    return Check("gelu", "max|bias|", (1,), (), 1, limit, False)


class Gelu:
    """gelu(z) of a linear output z, from z and its bias (``gelu_forward`` with the
    transformer's proved bound max|z| <= 2^37 + 1 + max|bias|, checked below 2^44)."""

    kind = "gelu"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (_gelu_bias_check(),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return gelu_forward(inputs[0], max_abs=_gelu_input_bound(inputs[1]))[0]

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box(index), None)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return _scalar(gelu_forward(_piece(pieces, 0), max_abs=0)[0])


class GeluBackward:
    """dz = g gelu'(z), from z, its bias (the forward's check, repeated: the same
    condition) and g (``gelu_backward``, its bound max|g| <= 2^37 + 1 proved: the gradient
    of a rounded product)."""

    kind = "gelu_backward"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        grad = Check(
            "gelu backward", "max|g|", (None,), (_GRAD_INPUT_BOUND,), 1, GELU_GRAD_LIMIT, False
        )
        return (_gelu_bias_check(), grad)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        z, bias, grad = inputs
        _, saved = gelu_forward(z, max_abs=_gelu_input_bound(bias))
        return gelu_backward(saved, grad, max_abs=_GRAD_INPUT_BOUND)[0]

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box(index), None, point_box(index))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        _, saved = gelu_forward(_piece(pieces, 0), max_abs=0)
        return _scalar(gelu_backward(saved, _piece(pieces, 2), max_abs=_GRAD_INPUT_BOUND)[0])


for _op in (
    EmbedTokens(),
    EmbeddingGrad(),
    PositionGrad(),
    RmsNorm(),
    GainMul(),
    RmsMeanDot(),
    RmsCenter(),
    RmsNormDx(),
    RmsGainGrad(),
    SplitHeads(),
    MergeHeads(),
    AttentionScores(),
    CausalSoftmax(),
    AttentionSoftmaxBackward(),
    ResidualAdd(),
    Gelu(),
    GeluBackward(),
):
    register(_op)

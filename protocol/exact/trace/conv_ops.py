"""The CNN's own operators: the patch gather (im2col), its scatter-sum (col2im), pooling and
its backward. The convolution's products themselves are ``matmul_nt`` (``ops``).

Kinds (inputs; attributes):

    im2col       x (B, C, H, W) -> (B OH OW, C k k); kernel, stride, padding
                 out[(b, oh, ow), (c, kh, kw)] = x[b, c, oh s + kh - p, ow s + kw - p], 0 in
                 the padding (``ops.conv``'s unfold order)
    col2im       cols (B, OH, OW, C, k, k) -> (B, C, H, W); kernel, stride, padding
                 rshift_round(sum of the patch entries that land on the pixel, 16): the
                 fold of ``conv2d_backward``, rounded once after the exact sum
    maxpool      x (B, C, H, W) -> (B, C, H/p, W/p); pool          (``maxpool2d_forward``)
    maxpool_grad x, g (B, C, H/p, W/p) -> (B, C, H, W); pool       (``maxpool2d_backward``)
    avgpool      x -> (B, C, H/p, W/p); pool                        (``avgpool2d_forward``)
    avgpool_grad g (B, C, H/p, W/p) -> (B, C, H, W); pool           (``avgpool2d_backward``)

An element of im2col reads one value (or none, in the padding); of col2im, the entries of the
(ceil(k/s) x ceil(k/s)) output positions whose windows cover the pixel (a box of at most
ceil(k/s)^2 k^2 values); of a pooling, one p x p window.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from protocol.exact.fixedpoint import FRAC, rshift_round_
from protocol.exact.ops.pool import (
    PoolSaved,
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from protocol.exact.trace.ops import Pieces, Shapes, piece, scalar, unravel
from protocol.exact.trace.registry import Box, Check, int_attr, point_box, register
from protocol.trace import OpNode


def _conv_attrs(node: OpNode) -> tuple[int, int, int]:
    return int_attr(node, "kernel"), int_attr(node, "stride"), int_attr(node, "padding")


class Im2col:
    """The (B OH OW, C k k) patch matrix of x: data movement only (exact, no check)."""

    kind = "im2col"

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        k, s, p = _conv_attrs(node)
        x = inputs[0]
        if p:
            x = F.pad(x, (p, p, p, p))
        patches = x.unfold(2, k, s).unfold(3, k, s)  # (B, C, OH, OW, k, k)
        return patches.permute(0, 2, 3, 1, 4, 5).reshape(node.shape).contiguous()

    def _source(
        self, node: OpNode, shape: tuple[int, ...], index: tuple[int, ...]
    ) -> tuple[int, ...] | None:
        k, s, p = _conv_attrs(node)
        _, c, h, w = shape
        oh_count = (h + 2 * p - k) // s + 1
        ow_count = (w + 2 * p - k) // s + 1
        b, oh, ow = unravel(index[0], (shape[0], oh_count, ow_count))
        ch, kh, kw = unravel(index[1], (c, k, k))
        y, x = oh * s + kh - p, ow * s + kw - p
        if not (0 <= y < h and 0 <= x < w):
            return None
        return (b, ch, y, x)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        source = self._source(node, shapes[0], index)
        return (None if source is None else point_box(source),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        value = pieces[0]
        return 0 if value is None else scalar(value)


def _covering(pixel: int, size: int, k: int, s: int, p: int) -> tuple[int, int]:
    """The output positions [lo, hi) whose windows cover padded pixel ``pixel + p`` along one
    axis: o s <= pixel + p < o s + k, 0 <= o < size."""
    at = pixel + p
    lo = max(0, -(-(at - k + 1) // s))
    hi = min(size, at // s + 1)
    return lo, max(lo, hi)


class Col2im:
    """grad_x = rshift_round(fold(cols), 16) cropped to the input: each pixel sums the patch
    entries that land on it, exactly, then rounds once (``conv2d_backward``)."""

    kind = "col2im"

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        k, s, p = _conv_attrs(node)
        cols = inputs[0]
        b, oh, ow, c = (int(v) for v in cols.shape[:4])
        _, _, h, w = node.shape
        patches = cols.permute(0, 3, 4, 5, 1, 2)  # (B, C, k, k, OH, OW)
        padded = torch.zeros((b, c, h + 2 * p, w + 2 * p), dtype=torch.int64, device=cols.device)
        # conv2d_backward's fold: each kernel offset adds its slab to a strided window.
        for kh in range(k):
            for kw in range(k):
                padded[:, :, kh : kh + s * (oh - 1) + 1 : s, kw : kw + s * (ow - 1) + 1 : s] += (
                    patches[:, :, kh, kw]
                )
        return rshift_round_(padded[:, :, p : p + h, p : p + w].contiguous(), FRAC)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        k, s, p = _conv_attrs(node)
        b, ch, y, x = index
        _, oh, ow = shapes[0][:3]
        oh_lo, oh_hi = _covering(y, oh, k, s, p)
        ow_lo, ow_hi = _covering(x, ow, k, s, p)
        if oh_lo == oh_hi or ow_lo == ow_hi:
            return (None,)
        return (((b, b + 1), (oh_lo, oh_hi), (ow_lo, ow_hi), (ch, ch + 1), (0, k), (0, k)),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        k, s, p = _conv_attrs(node)
        _, _, y, x = index
        box = pieces[0]
        if box is None:
            return 0
        oh, ow = int(box.shape[1]), int(box.shape[2])
        oh_lo = _covering(y, 1 << 62, k, s, p)[0]  # the box's first row (reads' lo)
        ow_lo = _covering(x, 1 << 62, k, s, p)[0]
        total = 0
        for i in range(oh):
            kh = y + p - (oh_lo + i) * s
            for j in range(ow):
                kw = x + p - (ow_lo + j) * s
                if 0 <= kh < k and 0 <= kw < k:
                    total += int(box[0, i, j, 0, kh, kw].item())
        return (total + (1 << (FRAC - 1))) >> FRAC


def _window(index: tuple[int, ...], pool: int) -> Box:
    b, c, i, j = index
    return ((b, b + 1), (c, c + 1), (i * pool, (i + 1) * pool), (j * pool, (j + 1) * pool))


class MaxPool:
    """The max of each p x p window, ties to the first (``maxpool2d_forward``; no check)."""

    kind = "maxpool"

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return maxpool2d_forward(inputs[0], int_attr(node, "pool"))[0]

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (_window(index, int_attr(node, "pool")),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return scalar(maxpool2d_forward(piece(pieces, 0), int_attr(node, "pool"))[0])


def _pooled_at(index: tuple[int, ...], shape: tuple[int, ...], pool: int) -> bool:
    """Whether input pixel ``index`` lies in a window (trailing rows and columns that fill no
    window get zero gradient)."""
    _, _, y, x = index
    return y < shape[2] // pool * pool and x < shape[3] // pool * pool


class MaxPoolGrad:
    """grad_x: each window's gradient routed to its winner, zeros elsewhere
    (``maxpool2d_backward``; the winners recomputed from the pooled input)."""

    kind = "maxpool_grad"

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        _, saved = maxpool2d_forward(inputs[0], int_attr(node, "pool"))
        return maxpool2d_backward(saved, inputs[1])

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        pool = int_attr(node, "pool")
        if not _pooled_at(index, node.shape, pool):
            return (None, None)
        b, c, y, x = index
        out = (b, c, y // pool, x // pool)
        return (_window(out, pool), point_box(out))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        pool = int_attr(node, "pool")
        if pieces[0] is None:
            return 0
        _, saved = maxpool2d_forward(piece(pieces, 0), pool)
        assert saved.winner is not None
        _, _, y, x = index
        mine = (y % pool) * pool + x % pool
        return scalar(piece(pieces, 1)) if scalar(saved.winner) == mine else 0


POOL_SUM_LIMIT = 1 << 61


def _pool_sum_check(node: OpNode) -> tuple[Check, ...]:
    """``ops.pool``'s check: p^2 max|x| < 2^61 (the window sum and div_round cannot wrap)."""
    pool = int_attr(node, "pool")
    return (Check(node.label, "n*max|x|", (0,), (), pool * pool, POOL_SUM_LIMIT, False),)


class AvgPool:
    """The mean of each p x p window, rounded half up once; checks p^2 max|x| < 2^61 over the
    whole input (``avgpool2d_forward``)."""

    kind = "avgpool"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return _pool_sum_check(node)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return avgpool2d_forward(inputs[0], int_attr(node, "pool"), node.label)[0]

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (_window(index, int_attr(node, "pool")),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return scalar(avgpool2d_forward(piece(pieces, 0), int_attr(node, "pool"))[0])


class AvgPoolGrad:
    """grad_x = the rounded g / p^2 of each window, copied to its pixels; checks p^2 max|g| <
    2^61 over the whole gradient (``avgpool2d_backward``)."""

    kind = "avgpool_grad"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return _pool_sum_check(node)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        pool = int_attr(node, "pool")
        b, c, h, w = node.shape
        saved = PoolSaved((b, c, h, w), pool, None)
        return avgpool2d_backward(saved, inputs[0], node.label)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        pool = int_attr(node, "pool")
        if not _pooled_at(index, node.shape, pool):
            return (None,)
        b, c, y, x = index
        return (point_box((b, c, y // pool, x // pool)),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        pool = int_attr(node, "pool")
        g = pieces[0]
        if g is None:
            return 0
        saved = PoolSaved((1, 1, pool, pool), pool, None)
        _, _, y, x = index
        return int(avgpool2d_backward(saved, g.reshape(1, 1, 1, 1))[0, 0, y % pool, x % pool])


for _op in (Im2col(), Col2im(), MaxPool(), MaxPoolGrad(), AvgPool(), AvgPoolGrad()):
    register(_op)

"""Exact 2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``): forward and
backward on int64 Q16 tensors, by im2col (unfold) and the caller's ``ExactMatmul``.

Shapes: x (B, C, H, W), weight (O, C, k, k), bias (O,), output (B, O, OH, OW) with
OH = (H + 2 padding - k) // stride + 1 (likewise OW); zero padding.

Math (integers, Q16; cols = unfold(pad(x)), the (B·OH·OW, C·k·k) patch matrix whose columns are
ordered (c, kh, kw) like ``weight.reshape(O, C·k·k)``; G = grad_out as a (B·OH·OW, O) matrix):

    forward     z       = rshift_round(cols @ W^T, 16) + b
    backward    grad_w  = rshift_round(G^T @ cols, 16)            summed over batch and positions
                grad_b  = sum of G over batch and positions      (exact: no rounding)
                grad_x  = rshift_round(fold(G @ W), 16)           cropped to the unpadded input

Rounding: one ``rshift_round`` (round half up) per output element of each of forward, grad_w
and grad_x. grad_x is *folded before it is rounded*: the overlapping patch contributions
(exact int64 products) are summed exactly and the sum is rounded once — the same rule as
``linear_backward``'s ``rshift_round(g @ W^T, 16)`` for the transposed convolution.

Bounds: every product goes through ``ExactMatmul``, which refuses (``OverflowBoundError``)
unless max|a|·max|b|·K < 2^53 (K = C·k·k forward, B·OH·OW for grad_w, O for grad_x), so every
matrix entry is an exact integer below 2^53. The fold adds at most ceil(k / stride)^2 <= k^2
such entries per input pixel; ``KERNEL_LIMIT`` (k <= 31, k^2 < 2^10) keeps that sum below
2^63 - 2^15, so neither the int64 sum nor its rounding can wrap. Forward: |z| < 2^37 + |b|, and
the VM's state range (|b| < 2^40) keeps it far from 2^63. grad_b sums B·OH·OW values of the
caller's gradient (each < 2^53 in any use inside the VM, since it was made by a checked
product); ``conv2d_backward`` checks max|G| · B·OH·OW < 2^62 at run time (else
``OverflowBoundError``), so that sum cannot wrap either.

Tolerance vs the float64 reference (``conv2d_reference``, reporting values in Q16 units, i.e.
times 2^16): forward, grad_w and grad_x differ by at most 0.5 (one rounding of an exact
integer; the float64 reference is itself exact in this range, since every partial sum is a
multiple of 2^-32 below 2^21); grad_b is equal.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from protocol.exact.bounds import batch_rows
from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    ExactMatmul,
    Operand,
    check_sum_bound,
    rshift_round_,
)

KERNEL_LIMIT = 31


class ConvSaved(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass."""

    cols: Operand  # (B·OH·OW, C·k·k) patch matrix in float64, bounded by max|x|
    weight: Operand  # (O, C·k·k)
    input_shape: tuple[int, int, int, int]  # (B, C, H, W)
    kernel: int
    stride: int
    padding: int
    out_hw: tuple[int, int]


def conv2d_output_hw(h: int, w: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """(OH, OW) of a convolution with these settings (torch's floor rule)."""
    return (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


def _unfold(
    x: Operand, kernel: int, stride: int, padding: int
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The (B·OH·OW, C·k·k) float64 patch matrix of x (data movement only: exact)."""
    t = x.t64
    b, c, h, w = t.shape
    oh, ow = conv2d_output_hw(h, w, kernel, stride, padding)
    if oh < 1 or ow < 1:
        raise ValueError(f"conv2d: kernel {kernel} does not fit a {h}x{w} input")
    if padding:
        t = F.pad(t, (padding, padding, padding, padding))
    patches = t.unfold(2, kernel, stride).unfold(3, kernel, stride)  # (B, C, OH, OW, k, k)
    cols = patches.permute(0, 2, 3, 1, 4, 5).reshape(b * oh * ow, c * kernel * kernel)
    return cols, (oh, ow)


def conv2d_forward(
    matmul: ExactMatmul,
    x: Operand | torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    where: str,
    *,
    stride: int = 1,
    padding: int = 0,
) -> tuple[torch.Tensor, ConvSaved]:
    """z = rshift_round(conv(x, weight), 16) + bias, (B, O, OH, OW) int64 Q16 (module doc).

    ``x`` may be an ``Operand`` (B, C, H, W) whose ``maxabs`` bounds it (e.g. the dataset's
    max for an input batch): the patch matrix inherits that bound without another reduction.
    Raises ``OverflowBoundError`` if the product could be inexact.
    """
    out_c, in_c, kernel, kernel2 = weight.shape
    if kernel != kernel2 or kernel > KERNEL_LIMIT:
        raise ValueError(
            f"conv2d: square kernels up to {KERNEL_LIMIT} only, got {kernel}x{kernel2}"
        )
    if stride < 1 or padding < 0:
        raise ValueError("conv2d: stride >= 1 and padding >= 0")
    x_op = x if isinstance(x, Operand) else Operand.of(x)
    if x_op.t64.dim() != 4 or x_op.t64.shape[1] != in_c:
        raise ValueError(f"conv2d: input {tuple(x_op.t64.shape)} for weight {tuple(weight.shape)}")
    cols64, (oh, ow) = _unfold(x_op, kernel, stride, padding)
    cols = Operand(cols64, x_op.maxabs)  # zero padding does not raise max|x|
    w_op = Operand.of(weight.reshape(out_c, in_c * kernel * kernel))
    z = rshift_round_(matmul(cols, w_op.T, where), FRAC)
    z += bias
    b = x_op.t64.shape[0]
    out = z.reshape(b, oh, ow, out_c).permute(0, 3, 1, 2).contiguous()
    shape = (b, in_c, int(x_op.t64.shape[2]), int(x_op.t64.shape[3]))
    return out, ConvSaved(cols, w_op, shape, kernel, stride, padding, (oh, ow))


def conv2d_backward(
    matmul: ExactMatmul,
    saved: ConvSaved,
    grad_out: torch.Tensor,
    where: str,
    need_input_grad: bool = True,
    *,
    round_weight_grad: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(grad_x | None, grad_w, grad_b) for grad_out (B, O, OH, OW) int64 Q16 (module doc).

    Raises ``OverflowBoundError`` if a product could be inexact. ``round_weight_grad=False``:
    grad_w is the exact sum before its rshift_round (a worker's share of the batch, summed
    across workers and rounded once: ``protocol.exact.shard``). Row counts in the bounds are
    the whole batch's.
    """
    b, in_c, h, w = saved.input_shape
    k, s, p = saved.kernel, saved.stride, saved.padding
    oh, ow = saved.out_hw
    out_c = int(saved.weight.t64.shape[0])
    g = grad_out.permute(0, 2, 3, 1).reshape(b * oh * ow, out_c)
    g_op = Operand.of(g)
    grad_w = matmul(g_op.T, saved.cols, f"{where}.grad_weight", over_rows=True)
    if round_weight_grad:
        grad_w = rshift_round_(grad_w, FRAC)
    grad_w = grad_w.reshape(out_c, in_c, k, k)
    terms = batch_rows(b * oh * ow)
    check_sum_bound(g_op.maxabs, terms, f"{where}.grad_bias")
    grad_b = g.sum(dim=0)
    if not need_input_grad:
        return None, grad_w, grad_b
    grad_cols = matmul(g_op, saved.weight, f"{where}.grad_input")  # exact, unrounded
    patches = grad_cols.reshape(b, oh, ow, in_c, k, k).permute(0, 3, 4, 5, 1, 2)
    padded = torch.zeros((b, in_c, h + 2 * p, w + 2 * p), dtype=torch.int64, device=grad_out.device)
    # fold: each kernel offset (kh, kw) adds its (B, C, OH, OW) slab to a strided window;
    # ascending (kh, kw) order, though int64 addition makes the order irrelevant.
    for kh in range(k):
        for kw in range(k):
            padded[:, :, kh : kh + s * (oh - 1) + 1 : s, kw : kw + s * (ow - 1) + 1 : s] += patches[
                :, :, kh, kw
            ]
    grad_x = rshift_round_(padded[:, :, p : p + h, p : p + w].contiguous(), FRAC)
    return grad_x, grad_w, grad_b


def conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    grad_out: torch.Tensor | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Float64 reference: (z, grad_x, grad_w, grad_b) of the same Q16 integers by
    ``torch.nn.functional.conv2d`` and autograd, every value reported in Q16 units (times
    2^16) so it compares directly with the exact integers. Gradients are None without
    ``grad_out``."""
    xf = (x.to(torch.float64) / ONE).requires_grad_(grad_out is not None)
    wf = (weight.to(torch.float64) / ONE).requires_grad_(grad_out is not None)
    bf = (bias.to(torch.float64) / ONE).requires_grad_(grad_out is not None)
    z = F.conv2d(xf, wf, bf, stride=stride, padding=padding)
    if grad_out is None:
        return z.detach() * ONE, None, None, None
    gx, gw, gb = torch.autograd.grad(z, (xf, wf, bf), grad_out.to(torch.float64) / ONE)
    return z.detach() * ONE, gx * ONE, gw * ONE, gb * ONE

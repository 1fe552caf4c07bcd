"""The linear operator: z = x @ W + b in Q16.

Math: z = rshift_round(x @ W, 16) + b, with W of shape (fan_in, fan_out) and x of shape
(..., fan_in). Backward, for the gradient g of z (..., fan_out):

    grad_W = rshift_round(x^T @ g, 16)     summed over every leading dimension
    grad_b = sum of g over every leading dimension
    grad_x = rshift_round(g @ W^T, 16)

Rounding: one ``rshift_round`` per product (half towards +infinity); sums are exact int64.
Bound: every product goes through ``ExactMatmul``, which refuses max|a| max|b| K >= 2^53 before
computing; the bias add stays below 2^41 (|b| < 2^40, |z| < 2^37); the bias gradient's sum is
checked at run time (``check_sum_bound``: max|g| x rows < 2^62, else OverflowBoundError) — a
gradient flowing back along a residual stream is not bounded by any product of this layer, and
a layer whose input is all zero passes the product bound whatever g is (red team).
Tolerance against the float reference: |z - x W| <= 0.5 ulp of Q16 plus the inputs' own
quantization (the products are exact; one rounding each).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from protocol.exact.bounds import batch_rows
from protocol.exact.fixedpoint import FRAC, ExactMatmul, Operand, check_sum_bound, rshift_round_


class LinearSaved(NamedTuple):
    x: Operand
    weight: Operand


def as_operand(t: Operand | torch.Tensor, *, nonnegative: bool = False) -> Operand:
    return t if isinstance(t, Operand) else Operand.of(t, nonnegative=nonnegative)


def linear_forward(
    matmul: ExactMatmul,
    x: Operand | torch.Tensor,
    weight: Operand | torch.Tensor,
    bias: torch.Tensor | None,
    where: str,
) -> tuple[torch.Tensor, LinearSaved]:
    """z = rshift_round(x @ W, 16) + b (b optional)."""
    x_op, w_op = as_operand(x), as_operand(weight)
    z = rshift_round_(matmul(x_op, w_op, where), FRAC)
    if bias is not None:
        z += bias
    return z, LinearSaved(x_op, w_op)


def linear_backward(
    matmul: ExactMatmul,
    saved: LinearSaved,
    grad_z: torch.Tensor,
    where: str,
    *,
    need_input_grad: bool = True,
    transposed_weight_grad: bool = False,
    round_weight_grad: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(grad_x or None, grad_W, grad_b) for the gradient ``grad_z`` of z.

    ``transposed_weight_grad``: grad_W formed as (g^T x)^T instead of x^T g — MKL's float64
    GEMM is ~1.5x faster that way round for a wide-to-narrow layer ((256, 64) from 512 rows:
    ~400 vs ~600 us). Each entry is the same exact integer sum (every product and partial sum
    below 2^53 by the same bound, max|g| max|x| K, the same float64 product in either order),
    transposing commutes with rshift_round, and the result is made contiguous.

    ``round_weight_grad=False``: grad_W is the exact sum x^T g *before* its rshift_round (a
    worker's share of the batch, summed across workers and rounded once:
    ``protocol.exact.shard``). Row counts in the bounds are the whole batch's."""
    fan_in, fan_out = saved.weight.t64.shape
    x2 = Operand(saved.x.t64.reshape(-1, fan_in), saved.x.maxabs)
    g_op = Operand.of(grad_z)
    g2 = Operand(g_op.t64.reshape(-1, fan_out), g_op.maxabs)
    if transposed_weight_grad:
        product = matmul(g2.T, x2, f"{where}.grad_weight", over_rows=True)  # (out, in)
        grad_w = _rounded(product, round_weight_grad).T.contiguous()
    else:
        product = matmul(x2.T, g2, f"{where}.grad_weight", over_rows=True)
        grad_w = _rounded(product, round_weight_grad)
    check_sum_bound(g_op.maxabs, batch_rows(g2.t64.shape[0]), f"{where}.grad_bias")
    grad_b = grad_z.reshape(-1, fan_out).sum(dim=0)
    grad_x = None
    if need_input_grad:
        grad_x = rshift_round_(matmul(g_op, saved.weight.T, f"{where}.grad_input"), FRAC)
    return grad_x, grad_w, grad_b


def _rounded(product: torch.Tensor, rounding: bool) -> torch.Tensor:
    """rshift_round(product, 16) in place, or the product itself when ``rounding`` is off."""
    return rshift_round_(product, FRAC) if rounding else product


def linear_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The float64 value of the Q16 linear map (inputs and output in real units)."""
    one = float(1 << FRAC)
    z = (x.to(torch.float64) / one) @ (weight.to(torch.float64) / one)
    if bias is not None:
        z = z + bias.to(torch.float64) / one
    return z

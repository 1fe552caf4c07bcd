"""Embedding lookup: rows of a Q16 table selected by integer ids.

Math: y[..., :] = table[ids[...], :]. Backward, for the gradient g of y (..., d):
grad_table[v, :] = sum of g[...] over the positions whose id is v (an index_add).

Rounding: none; the lookup copies and the backward's sums are exact int64 additions, so their
order (atomics on a GPU, any thread count) cannot change the result.

Bound: the backward checks max|g| * N < 2^62 (N = number of looked-up positions) before it
adds, so no partial sum can wrap; ``OverflowBoundError`` otherwise.

Tolerance vs ``embedding_reference``: exact (0 ulp) — the same integers, a float64 copy.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from protocol.exact.bounds import batch_rows
from protocol.exact.fixedpoint import maxabs, require_product_below

_LIMIT = 1 << 62


class EmbeddingSaved(NamedTuple):
    ids: torch.Tensor
    rows: int  # table rows (V)


def embedding_forward(
    table: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, EmbeddingSaved]:
    """table[ids]: (..., d) for ids (...) in [0, V)."""
    return table[ids], EmbeddingSaved(ids, int(table.shape[0]))


def embedding_backward(saved: EmbeddingSaved, grad_y: torch.Tensor) -> tuple[torch.Tensor]:
    """(grad_table,) = index_add of ``grad_y`` rows at ``ids`` into a zero (V, d) table."""
    d = grad_y.shape[-1]
    flat = grad_y.reshape(-1, d)
    rows = batch_rows(int(flat.shape[0]))
    require_product_below((maxabs(flat),), rows, _LIMIT, "embedding backward", "max|g|*N")
    grad = torch.zeros(saved.rows, d, dtype=grad_y.dtype, device=grad_y.device)
    grad.index_add_(0, saved.ids.reshape(-1), flat)
    return (grad,)


def embedding_reference(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """float64 lookup of real-valued ``table`` (differentiable)."""
    return torch.nn.functional.embedding(ids, table)

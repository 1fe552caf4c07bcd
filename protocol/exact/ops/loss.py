"""Cross-entropy over classes or a vocabulary: exact gradient, float loss for reporting.

Math, for logits z (N, V) and targets y (N,), the loss summed over the N terms:

    L = sum_n -log softmax(z_n)[y_n] ;  dL/dz_n = softmax(z_n) - onehot(y_n)

Integers (Q16): P = ``softmax_lastdim(z)`` (the house integer softmax, row-wise; identical to
``softmax_fixed``), grad = P - 2^16 onehot(y). The gradient is of the *summed* loss; the
optimizer divides by N with a shift.

The loss value itself (``cross_entropy_loss``) is float64 log-softmax of the exact logits: it
is for reporting and evaluation only and never enters a state.

Rounding: only the softmax's (see ``ops.attention``); the subtraction is exact.
Bound: |z| < 2^61 is checked by the softmax; 0 <= P <= 2^16, so |grad| <= 2^16.
Tolerance vs ``cross_entropy_reference`` (float64 autograd of the same Q16 logits):
|grad - ref| <= 4e-4 (exp2_fixed's 2.4e-4 relative error, the floor, the rounding of z log2 e).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from protocol.exact.fixedpoint import ONE
from protocol.exact.ops.attention import softmax_lastdim


class CrossEntropySaved(NamedTuple):
    p: torch.Tensor  # Q16 probabilities (N, V)
    targets: torch.Tensor  # (N,)


def cross_entropy_forward(
    logits: torch.Tensor, targets: torch.Tensor, *, inplace: bool = False
) -> tuple[torch.Tensor, CrossEntropySaved]:
    """P = integer softmax of the Q16 logits (N, V); returns (P, saved). ``inplace``: the
    logits are the caller's to give up (``softmax_lastdim``'s in-place form, same integers)."""
    p = softmax_lastdim(logits, inplace=inplace)
    return p, CrossEntropySaved(p, targets)


def cross_entropy_backward(
    saved: CrossEntropySaved, *, inplace: bool = False
) -> tuple[torch.Tensor]:
    """(grad_logits,) = P - onehot(targets), Q16: the gradient of the loss summed over rows.
    ``inplace``: written over the saved P (which the caller no longer reads)."""
    grad = saved.p if inplace else saved.p.clone()
    rows = torch.arange(grad.shape[0], device=grad.device)
    grad[rows, saved.targets] -= ONE
    return (grad,)


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cross-entropy in nats of Q16 logits (N, V), in float64 — reporting only."""
    z = logits.to(torch.float64) / ONE
    return float(torch.nn.functional.cross_entropy(z, targets, reduction="mean").item())


def cross_entropy_reference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """float64 cross-entropy of real-valued logits, summed over rows (differentiable)."""
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")

"""The exact VM's integer arithmetic: one rounding rule, exact matmul, integer softmax."""

from __future__ import annotations

import math

import pytest
import torch

from protocol.errors import OverflowBoundError
from protocol.exact.fixedpoint import (
    ONE,
    ExactMatmul,
    exp2_fixed,
    rshift_round,
    softmax_fixed,
)


@pytest.mark.parametrize(
    ("value", "shift", "expected"),
    [(0, 4, 0), (7, 4, 0), (8, 4, 1), (9, 4, 1), (-8, 4, 0), (-9, 4, -1), (24, 4, 2), (5, 0, 5)],
)
def test_rshift_round_half_up(value: int, shift: int, expected: int) -> None:
    assert int(rshift_round(torch.tensor(value), shift)) == expected


def test_exact_matmul_matches_int64_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-(2**20), 2**20, (17, 300), generator=gen)
    b = torch.randint(-(2**20), 2**20, (300, 9), generator=gen)
    matmul = ExactMatmul()
    product = matmul(a, b, "test")
    matmul.check()
    assert torch.equal(product, a @ b)


def test_exact_matmul_refuses_to_overflow() -> None:
    a = torch.full((2, 64), 2**24, dtype=torch.int64)
    b = torch.full((64, 2), 2**24, dtype=torch.int64)
    matmul = ExactMatmul()
    with pytest.raises(OverflowBoundError, match="forward0"):
        matmul(a, b, "forward0")  # refused before the product is computed


def test_exp2_fixed_is_accurate() -> None:
    t = torch.arange(-10 * ONE, 1, 997)
    approx = exp2_fixed(t).double() / ONE
    exact = torch.pow(2.0, t.double() / ONE)
    assert float((approx - exact).abs().max()) < 3e-4


def test_softmax_fixed_sums_to_one_and_matches_float() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randint(-8 * ONE, 8 * ONE, (32, 10), generator=gen)
    probs = softmax_fixed(logits)
    assert probs.dtype == torch.int64
    assert int((probs.sum(dim=1) - ONE).abs().max()) <= 10
    reference = torch.softmax(logits.double() / ONE, dim=1)
    assert float((probs.double() / ONE - reference).abs().max()) < 1e-3
    assert math.isclose(float(probs[0].sum()) / ONE, 1.0, abs_tol=1e-3)

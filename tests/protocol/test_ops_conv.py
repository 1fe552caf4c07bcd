"""Exact conv2d and pooling operators agree with float64 references within their stated
tolerances (0.5 in Q16 units for each rounding; max pooling exactly), and refuse to overflow."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import OverflowBoundError
from protocol.exact.fixedpoint import ONE, ExactMatmul, Operand
from protocol.exact.ops.conv import conv2d_backward, conv2d_forward, conv2d_reference
from protocol.exact.ops.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    avgpool2d_reference,
    maxpool2d_backward,
    maxpool2d_forward,
    maxpool2d_reference,
)

TOL = 0.5 + 1e-6  # one half-up rounding of an exact integer, plus float64 slack


def _ints(gen: torch.Generator, shape: tuple[int, ...], bound: int) -> torch.Tensor:
    return torch.randint(-bound, bound + 1, shape, generator=gen, dtype=torch.int64)


conv_cases = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31),
        "batch": st.integers(1, 3),
        "in_c": st.integers(1, 3),
        "out_c": st.integers(1, 4),
        "kernel": st.integers(1, 4),
        "stride": st.integers(1, 3),
        "padding": st.integers(0, 2),
        "extra_h": st.integers(0, 5),
        "extra_w": st.integers(0, 5),
        "scale": st.sampled_from([1, 2, 8, 64]),
    }
)


@settings(max_examples=60, deadline=None)
@given(conv_cases)
def test_conv2d_matches_float_reference(case: dict[str, int]) -> None:
    gen = torch.Generator().manual_seed(case["seed"])
    k, s, p = case["kernel"], case["stride"], case["padding"]
    h = max(k - 2 * p, 1) + case["extra_h"]
    w = max(k - 2 * p, 1) + case["extra_w"]
    bound = case["scale"] * ONE
    x = _ints(gen, (case["batch"], case["in_c"], h, w), bound)
    weight = _ints(gen, (case["out_c"], case["in_c"], k, k), ONE)
    bias = _ints(gen, (case["out_c"],), ONE)
    matmul = ExactMatmul()
    z, saved = conv2d_forward(matmul, x, weight, bias, "conv", stride=s, padding=p)
    grad_out = _ints(gen, tuple(z.shape), ONE)
    grad_x, grad_w, grad_b = conv2d_backward(matmul, saved, grad_out, "conv")
    rz, rgx, rgw, rgb = conv2d_reference(x, weight, bias, grad_out, stride=s, padding=p)
    assert z.dtype == torch.int64 and z.shape == rz.shape
    assert float((z.double() - rz).abs().max()) <= TOL
    assert grad_x is not None and rgx is not None and rgw is not None and rgb is not None
    assert grad_x.dtype == torch.int64 and grad_x.shape == x.shape
    assert float((grad_x.double() - rgx).abs().max()) <= TOL
    assert grad_w.shape == weight.shape
    assert float((grad_w.double() - rgw).abs().max()) <= TOL
    assert torch.equal(grad_b.double(), rgb)


def test_conv2d_accepts_operand_and_skips_input_grad() -> None:
    gen = torch.Generator().manual_seed(3)
    x = _ints(gen, (2, 1, 8, 8), ONE).abs()
    weight = _ints(gen, (4, 1, 3, 3), ONE)
    bias = torch.zeros(4, dtype=torch.int64)
    matmul = ExactMatmul()
    z1, _ = conv2d_forward(matmul, x, weight, bias, "c", padding=1)
    z2, saved = conv2d_forward(
        matmul, Operand(x.double(), torch.tensor(float(ONE))), weight, bias, "c", padding=1
    )
    assert torch.equal(z1, z2) and z1.shape == (2, 4, 8, 8)
    grad_x, grad_w, _ = conv2d_backward(matmul, saved, z2, "c", need_input_grad=False)
    assert grad_x is None and grad_w.shape == weight.shape


def test_conv2d_rounds_half_up_once() -> None:
    # one pixel, 1x1 kernel: z = round(x * w / 2^16) with x * w / 2^16 = -0.5 and +0.5 (ulps)
    matmul = ExactMatmul()
    x = torch.tensor([[[[-1, 1]]]], dtype=torch.int64)
    weight = torch.tensor([[[[ONE // 2]]]], dtype=torch.int64)
    z, _ = conv2d_forward(matmul, x, weight, torch.zeros(1, dtype=torch.int64), "c")
    assert z.flatten().tolist() == [0, 1]


def test_conv2d_refuses_to_overflow() -> None:
    matmul = ExactMatmul()
    x = torch.full((1, 4, 6, 6), 2**24, dtype=torch.int64)
    weight = torch.full((2, 4, 3, 3), 2**24, dtype=torch.int64)
    bias = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(OverflowBoundError, match="conv0"):
        conv2d_forward(matmul, x, weight, bias, "conv0")
    # backward: a small forward, then a gradient too large for the grad_weight product
    small = torch.full((1, 4, 6, 6), ONE, dtype=torch.int64)
    z, saved = conv2d_forward(matmul, small, torch.ones((2, 4, 3, 3), dtype=torch.int64), bias, "c")
    huge = torch.full(z.shape, 2**40, dtype=torch.int64)
    with pytest.raises(OverflowBoundError, match="conv1"):
        conv2d_backward(matmul, saved, huge, "conv1")
    # all-zero input: the grad_weight product is trivially exact, but the bias gradient's
    # int64 sum of 16 values near 2^59 would wrap — refused, not wrapped
    zeros = torch.zeros((1, 4, 6, 6), dtype=torch.int64)
    z, saved = conv2d_forward(matmul, zeros, torch.ones((2, 4, 3, 3), dtype=torch.int64), bias, "c")
    with pytest.raises(OverflowBoundError, match="grad_bias"):
        conv2d_backward(matmul, saved, torch.full(z.shape, 2**59, dtype=torch.int64), "conv2")


pool_cases = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31),
        "batch": st.integers(1, 3),
        "channels": st.integers(1, 3),
        "pool": st.integers(1, 4),
        "out_h": st.integers(1, 3),
        "out_w": st.integers(1, 3),
        "rest_h": st.integers(0, 3),
        "rest_w": st.integers(0, 3),
        "levels": st.sampled_from([3, 50, 4 * ONE]),  # few levels: many ties
    }
)


def _pool_input(case: dict[str, int]) -> tuple[torch.Tensor, int]:
    gen = torch.Generator().manual_seed(case["seed"])
    p = case["pool"]
    h = case["out_h"] * p + min(case["rest_h"], p - 1)
    w = case["out_w"] * p + min(case["rest_w"], p - 1)
    return _ints(gen, (case["batch"], case["channels"], h, w), case["levels"]), p


@settings(max_examples=60, deadline=None)
@given(pool_cases)
def test_maxpool2d_matches_float_reference_exactly(case: dict[str, int]) -> None:
    x, p = _pool_input(case)
    out, saved = maxpool2d_forward(x, p)
    gen = torch.Generator().manual_seed(case["seed"] + 1)
    grad_out = _ints(gen, tuple(out.shape), ONE)
    grad_x = maxpool2d_backward(saved, grad_out)
    ref_out, ref_gx = maxpool2d_reference(x, p, grad_out)
    assert out.dtype == torch.int64 and torch.equal(out.double(), ref_out)
    assert ref_gx is not None and grad_x.shape == x.shape
    assert torch.equal(grad_x.double(), ref_gx)


def test_maxpool2d_ties_go_to_first_in_row_major_order() -> None:
    x = torch.tensor([[[[5, 7], [7, 1]]]], dtype=torch.int64)
    out, saved = maxpool2d_forward(x, 2)
    grad_x = maxpool2d_backward(saved, torch.tensor([[[[9]]]]))
    assert out.flatten().tolist() == [7]
    assert grad_x.flatten().tolist() == [0, 9, 0, 0]


@settings(max_examples=60, deadline=None)
@given(pool_cases)
def test_avgpool2d_matches_float_reference(case: dict[str, int]) -> None:
    x, p = _pool_input(case)
    out, saved = avgpool2d_forward(x, p)
    gen = torch.Generator().manual_seed(case["seed"] + 1)
    grad_out = _ints(gen, tuple(out.shape), ONE)
    grad_x = avgpool2d_backward(saved, grad_out)
    ref_out, ref_gx = avgpool2d_reference(x, p, grad_out)
    assert out.dtype == torch.int64
    assert float((out.double() - ref_out).abs().max()) <= TOL
    assert ref_gx is not None and grad_x.shape == x.shape
    assert float((grad_x.double() - ref_gx).abs().max()) <= TOL


def test_avgpool2d_rounds_half_up() -> None:
    # p = 2 (a shift): window sums 2 and -2 over 4 elements, 0.5 -> 1 and -0.5 -> 0
    x = torch.tensor([[[[1, 1, -1, 0], [0, 0, -1, 0]]]], dtype=torch.int64)
    out, _ = avgpool2d_forward(x, 2)
    assert out.flatten().tolist() == [1, 0]
    # p = 3 (div_round by 9): 40/9 -> 4, 41/9 -> 5, -40/9 -> -4, -41/9 -> -5
    for total, expected in [(40, 4), (41, 5), (-40, -4), (-41, -5)]:
        window = torch.zeros((1, 1, 3, 3), dtype=torch.int64)
        window[0, 0, 1, 2] = total
        assert avgpool2d_forward(window, 3)[0].item() == expected


@pytest.mark.parametrize("pool", [2, 3])
def test_avgpool2d_refuses_to_overflow(pool: int) -> None:
    x = torch.full((1, 1, 2 * pool, 2 * pool), 2**59, dtype=torch.int64)
    with pytest.raises(OverflowBoundError, match="pool7"):
        avgpool2d_forward(x, pool, "pool7")
    x[...] = -(2**63)  # |min int64| must not wrap past the check
    with pytest.raises(OverflowBoundError):
        avgpool2d_forward(x, pool, "pool7")
    _, saved = avgpool2d_forward(torch.zeros_like(x), pool)
    with pytest.raises(OverflowBoundError, match=r"pool7\.backward"):
        avgpool2d_backward(saved, torch.full((1, 1, 2, 2), 2**60, dtype=torch.int64), "pool7")

"""Sums the product bound does not cover are checked too: a step that would wrap int64 is
skipped by the overflow rule, never computed (red team: a transformer's bias gradient, summed
over B x T rows of a residual-stream gradient, passed 2^63 from a state inside the 2^40 range).
"""

from __future__ import annotations

import torch

from protocol.datasets import load_dataset
from protocol.exact import init, step
from protocol.exact.fixedpoint import STATE_LIMIT
from protocol.spec import JobSpec, parse_spec


def _wide_context_spec() -> JobSpec:
    return parse_spec(
        {
            "version": 1,
            "model": {
                "family": "transformer",
                "vocab": 76,
                "context": 128,
                "d_model": 2,
                "heads": 1,
                "layers": 1,
                "ff": 1,
            },
            "dataset": {
                "id": "shakespeare-char",
                "hash": load_dataset("shakespeare-char").content_hash_hex,
            },
            "seed": 1,
            "steps": 1,
            "batch_size": 256,  # 2^15 rows in every bias gradient's sum
            "optimizer": {"name": "sgd", "lr_log2": -16, "momentum": 0.0},
            "checkpoint_interval": 1,
        }
    )


def test_a_bias_gradient_that_would_wrap_skips_the_step() -> None:
    spec = _wide_context_spec()
    state = init(spec)
    for name, tensor in state.items():
        if name != "step":
            tensor.zero_()  # a zero residual stream: every product bound is 0
    state["head.weight"][:, 74] = 1 << 30
    state["norm.gain"][:] = 1 << 33  # the final norm's gradient: ~2^49 on every row
    state["block0.norm1.gain"][:] = 1 << 16
    state["block0.mlp.out.weight"][:] = -8
    state["block0.mlp.in.weight"][:] = 1 << 17
    state["block0.norm2.gain"][:] = 1 << 20
    assert max(int(t.abs().max()) for t in state.values()) < STATE_LIMIT
    after = step(spec, state, 0)
    assert int(after["step"]) == 1
    for name, tensor in state.items():
        if name != "step":
            assert torch.equal(after[name], tensor), name  # skipped: nothing else moved

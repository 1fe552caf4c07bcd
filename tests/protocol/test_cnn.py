"""The CNN family: exact gradients match float64 autograd of the same integer weights, and a
short exact training tracks the native float32 one."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from protocol.exact import program
from protocol.exact.cnn import FAMILY
from protocol.exact.fixedpoint import ONE, ExactMatmul
from protocol.spec import JobSpec, parse_spec

DIGITS_HASH = "db5c3e7d8be89e5c11f50fccf960c8405369f4f31ae254985cd96e0d6a7c70e4"


def cnn_spec(conv: list[dict[str, Any]], hidden: list[int], **overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "version": 1,
        "model": {
            "family": "cnn",
            "image": [1, 8, 8],
            "conv": conv,
            "hidden": hidden,
            "classes": 10,
        },
        "dataset": {"id": "digits", "hash": DIGITS_HASH},
        "seed": 3,
        "steps": 40,
        "batch_size": 16,
        "optimizer": {"name": "sgd", "lr_log2": -5, "momentum": 0.875},
        "checkpoint_interval": 10,
    }
    data.update(overrides)
    return parse_spec(data)


MAX2 = {"channels": 4, "kernel": 3, "padding": 1, "pool": 2, "pool_type": "max"}
SPECS = {
    "max-pool, two convs": cnn_spec(
        [MAX2, {"channels": 6, "kernel": 3, "padding": 1, "pool": 2}], [12]
    ),
    "avg-pool 2": cnn_spec([{"channels": 5, "kernel": 3, "pool": 2, "pool_type": "avg"}], []),
    "stride 2, avg-pool 3": cnn_spec(
        [
            {"channels": 3, "kernel": 2, "stride": 2, "padding": 1, "pool": 1},
            {"channels": 4, "kernel": 1, "pool": 3, "pool_type": "avg"},
        ],
        [8],
    ),
}


def _float_gradients(spec: JobSpec, params: dict[str, torch.Tensor], batch: Any) -> dict[str, Any]:
    """Autograd of the summed cross-entropy in float64, on the same (dequantized) integers."""
    module = FAMILY.native_module(spec, params).double()
    logits = module(batch.inputs.to(torch.float64) / ONE)
    loss = torch.nn.functional.cross_entropy(logits, batch.targets, reduction="sum")
    loss.backward()  # type: ignore[no-untyped-call]
    grads = {}
    for name, param in FAMILY.native_parameters(module).items():
        assert param.grad is not None
        grad = param.grad.T if name.startswith("dense") and name.endswith("weight") else param.grad
        grads[name] = grad * ONE
    return grads


@pytest.mark.parametrize("label", list(SPECS))
def test_gradients_match_float_autograd(label: str) -> None:
    spec = SPECS[label]
    device = torch.device("cpu")
    state = program.run(spec, program.init(spec), 0, 5)  # nonzero biases, moved weights
    params = {name: state[name] for name in spec.model.param_shapes()}
    batch = FAMILY.batch(spec, 5, device)
    assert batch.inputs.shape == (spec.batch_size, 1, 8, 8)
    exact = FAMILY.gradients(spec, params, batch, ExactMatmul())
    reference = _float_gradients(spec, params, batch)
    assert list(exact) == list(spec.model.param_shapes())
    for name, g in exact.items():
        ref = reference[name]
        assert g.dtype == torch.int64 and tuple(g.shape) == tuple(ref.shape), name
        # softmax_fixed's ~1e-3 relative error and a few half-ulp roundings per layer
        scale = float(ref.abs().max())
        err = float((g.double() - ref).abs().max())
        assert err <= 0.01 * scale + 64, (name, err, scale)


def test_init_names_shapes_and_range() -> None:
    spec = SPECS["max-pool, two convs"]
    params = FAMILY.init_params(spec, torch.device("cpu"))
    assert {k: tuple(v.shape) for k, v in params.items()} == spec.model.param_shapes()
    conv0 = params["conv0.weight"]  # fan_in 1*3*3: limit round(2^16 / 3)
    assert int(conv0.abs().max()) <= ONE // 3 + 1 and int(conv0.abs().max()) > ONE // 6
    assert all(int(params[n].abs().max()) == 0 for n in params if n.endswith(".bias"))
    again = FAMILY.init_params(spec, torch.device("cpu"))
    assert all(torch.equal(params[n], again[n]) for n in params)


def test_short_exact_training_tracks_native() -> None:
    sgd = {"name": "sgd", "lr_log2": -4, "momentum": 0.875}
    spec = cnn_spec([MAX2], [16], steps=200, seed=5, checkpoint_interval=40, optimizer=sgd)
    state = program.run(spec, program.init(spec), 0, spec.steps)
    exact_accuracy = program.evaluate(spec, state)
    device = torch.device("cpu")
    module = FAMILY.native_module(spec, FAMILY.init_params(spec, device))
    optimizer = torch.optim.SGD(module.parameters(), lr=2.0**-4, momentum=0.875)
    for i in range(spec.steps):
        loss = FAMILY.native_loss(spec, module, FAMILY.batch(spec, i, device))
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    native_accuracy = FAMILY.native_evaluate(spec, module)
    # measured: exact 0.908, native 0.916 (200 steps of 16 from chance)
    assert exact_accuracy >= 0.85 and native_accuracy >= 0.85
    assert abs(exact_accuracy - native_accuracy) <= 0.05

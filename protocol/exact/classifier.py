"""What the classifier families (``mlp``, ``cnn``) share: initialization, step i's batch, the
dense stack (forward, backward, its float32 twin) and the cross-entropy gradient over
classes."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from protocol.exact.data import carried_inputs, dataset_tensors
from protocol.exact.family import Batch, Params, RowSum
from protocol.exact.fixedpoint import FRAC, ONE, ExactMatmul, Operand
from protocol.exact.ops.linear import LinearSaved, linear_backward, linear_forward
from protocol.exact.ops.loss import cross_entropy_backward, cross_entropy_forward
from protocol.models import layer_param
from protocol.randomness import batch_indices, random_bytes
from protocol.spec import JobSpec


def fan_in(shape: tuple[int, ...]) -> int:
    """in_c·k·k for a conv weight (out_c, in_c, k, k); fan_in for a dense (fan_in, fan_out)."""
    return math.prod(shape[1:]) if len(shape) == 4 else shape[0]


def init_weight(spec: JobSpec, name: str, fan_in: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform integers in ±round(2^16 / sqrt(fan_in)) from the counter-based hash of
    (seed, name): the usual ±1/sqrt(fan_in) initialization, identical everywhere."""
    limit = math.isqrt(ONE * ONE // fan_in)
    count = math.prod(shape)
    # ``random_below``'s values (v mod bound of the same uint64 stream), as one array: the
    # referee recomputes state 0 for leaf 0, in a transaction (1.15 s at 4.35M parameters as
    # a Python list, ~0.1 s so).
    raw = np.frombuffer(random_bytes("init", spec.seed, name, count=count), dtype="<u8")
    values = (raw % np.uint64(2 * limit + 1)).astype(np.int64)
    return torch.from_numpy(values).reshape(shape) - limit


def init_classifier(spec: JobSpec, device: torch.device) -> dict[str, torch.Tensor]:
    """State 0's parameters: weights by ``init_weight``, biases zero."""
    dataset_tensors(spec, device)  # fail early on a wrong dataset or shape
    params = {}
    for name, shape in spec.model.param_shapes().items():
        if name.endswith(".weight"):
            params[name] = init_weight(spec, name, fan_in(shape), shape).to(device)
        else:
            params[name] = torch.zeros(shape, dtype=torch.int64, device=device)
    return params


def classifier_batch(
    spec: JobSpec, i: int, device: torch.device, shape: tuple[int, ...] = ()
) -> Batch:
    """Step i's examples (reshaped to ``shape`` per example, a view) and labels; the carried
    operand is bounded by the whole dataset's max."""
    train_x, train_y, _, _ = dataset_tensors(spec, device)
    index = torch.tensor(
        batch_indices(spec.seed, i, spec.batch_size, train_x.shape[0]), device=device
    )
    carried = carried_inputs(spec, device)
    view = (-1, *shape) if shape else (spec.batch_size, -1)
    operand = Operand(carried.t64[index].reshape(view), carried.maxabs)
    return Batch(train_x[index].reshape(view), train_y[index], operand)


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of the cross-entropy summed over rows: softmax(z) - onehot(y), Q16."""
    _, saved = cross_entropy_forward(logits, targets)
    (grad,) = cross_entropy_backward(saved)
    return grad


Predict = Callable[[JobSpec, Params, torch.Tensor], torch.Tensor]


def held_out_accuracy(spec: JobSpec, params: Params, predict: Predict) -> float:
    """The fraction of the dataset's test split that ``predict`` classifies right."""
    device = next(iter(params.values())).device
    _, _, test_x, test_y = dataset_tensors(spec, device)
    correct = int((predict(spec, params, test_x) == test_y).sum().item())
    return correct / int(test_y.shape[0])


def relu_operand(z: torch.Tensor) -> Operand:
    """``Operand.of(clamp(z, min=0), nonnegative=True)`` with one int64 temporary fewer: the
    conversion first, then the clamp in float64 in place. The same values: |z| < 2^53 (it is
    a requantized exact product plus a bias, far below), so the conversion is exact and
    commutes with max(., 0); the amax of the same float64 values is the same."""
    t64 = z.to(torch.float64)
    t64.clamp_(min=0)
    return Operand(t64, t64.amax())


def dense_forward(
    matmul: ExactMatmul, x: Operand, params: Params, prefix: str, layers: int
) -> tuple[list[LinearSaved], list[torch.Tensor]]:
    """A dense stack ``prefix0 .. prefix{layers-1}`` with ReLU between layers (none after the
    last, the logits): what each layer saved for the backward pass, and its pre-activations."""
    saved, pre = [], []
    inputs = x
    for layer in range(layers):
        weight = matmul.operand(params[layer_param(prefix, layer, "weight")])
        bias = params[layer_param(prefix, layer, "bias")]
        z, kept = linear_forward(matmul, inputs, weight, bias, f"{prefix}{layer}")
        saved.append(kept)
        pre.append(z)
        if layer < layers - 1:
            inputs = relu_operand(z)
    return saved, pre


def dense_backward(
    matmul: ExactMatmul,
    saved: list[LinearSaved],
    pre: list[torch.Tensor],
    grad: torch.Tensor,
    prefix: str,
    grads: dict[str, RowSum],
    *,
    need_input_grad: bool,
) -> torch.Tensor | None:
    """The stack's parameter gradients into ``grads`` as row sums (``RowSum``: a weight's
    before its rounding), for the gradient ``grad`` of its logits; returns the gradient of its
    input when ``need_input_grad`` (else None)."""
    for layer in reversed(range(len(saved))):
        grad_x, gw, gb = linear_backward(
            matmul,
            saved[layer],
            grad,
            f"{prefix}{layer}",
            need_input_grad=layer > 0 or need_input_grad,
            round_weight_grad=False,
        )
        grads[layer_param(prefix, layer, "weight")] = RowSum(gw, FRAC)
        grads[layer_param(prefix, layer, "bias")] = RowSum(gb, 0)
        if layer == 0:
            return grad_x
        assert grad_x is not None
        # grad_x * [z > 0] in place on the fresh product: x*1 = x, x*0 = 0.
        grad = grad_x.mul_(pre[layer - 1] > 0)
    return grad


def native_dense(params: Params, sizes: list[int], prefix: str) -> list[torch.nn.Module]:
    """nn.Linear layers with ReLU between for the dense stack ``prefix`` of ``sizes``, holding
    its (dequantized) weights; a dense weight (fan_in, fan_out) is nn.Linear's (out, in)
    transposed."""
    layers: list[torch.nn.Module] = []
    for layer in range(len(sizes) - 1):
        linear = torch.nn.Linear(sizes[layer], sizes[layer + 1])
        weight = params[layer_param(prefix, layer, "weight")]
        bias = params[layer_param(prefix, layer, "bias")]
        with torch.no_grad():
            linear.weight.copy_(weight.T.to(torch.float32) / ONE)
            linear.bias.copy_(bias.to(torch.float32) / ONE)
        layers += [linear, torch.nn.ReLU()]
    return layers[:-1]


def native_dense_parameters(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """The module's nn.Linear parameters under the dense stack's names, in order."""
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    named: dict[str, torch.Tensor] = {}
    for layer, linear in enumerate(linears):
        named[layer_param(prefix, layer, "weight")] = linear.weight
        named[layer_param(prefix, layer, "bias")] = linear.bias
    return named


def native_accuracy(spec: JobSpec, module: torch.nn.Module, shape: tuple[int, ...] = ()) -> float:
    """The float32 module's accuracy on the test split (inputs reshaped to ``shape``)."""
    device = next(module.parameters()).device
    _, _, test_x, test_y = dataset_tensors(spec, device)
    inputs = test_x.reshape(-1, *shape) if shape else test_x
    with torch.no_grad():
        predicted = module(inputs.to(torch.float32) / ONE).argmax(dim=1)
    return float((predicted == test_y).float().mean().item())

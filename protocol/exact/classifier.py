"""What the classifier families (``mlp``, ``cnn``) share: initialization, step i's batch and the
cross-entropy gradient over classes."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from protocol.exact.data import carried_inputs, dataset_tensors
from protocol.exact.family import Batch, Params
from protocol.exact.fixedpoint import ONE, Operand
from protocol.exact.ops.loss import cross_entropy_backward, cross_entropy_forward
from protocol.randomness import batch_indices, random_below
from protocol.spec import JobSpec


def fan_in(shape: tuple[int, ...]) -> int:
    """in_c·k·k for a conv weight (out_c, in_c, k, k); fan_in for a dense (fan_in, fan_out)."""
    return math.prod(shape[1:]) if len(shape) == 4 else shape[0]


def init_weight(spec: JobSpec, name: str, fan_in: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform integers in ±round(2^16 / sqrt(fan_in)) from the counter-based hash of
    (seed, name): the usual ±1/sqrt(fan_in) initialization, identical everywhere."""
    limit = math.isqrt(ONE * ONE // fan_in)
    count = math.prod(shape)
    values = random_below("init", spec.seed, name, count=count, bound=2 * limit + 1)
    return torch.tensor(values, dtype=torch.int64).reshape(shape) - limit


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

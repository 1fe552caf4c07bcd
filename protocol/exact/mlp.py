"""The MLP family: ``input_dim -> hidden... -> classes``, ReLU between layers.

Math per step i (all Q16 integers, B = batch size, L layers):

    a_0 = x[batch(seed, i)]
    z_l = round(a_{l-1} @ W_l / 2^16) + b_l ;  a_l = relu(z_l)   (no ReLU on z_L, the logits)
    p   = softmax_fixed(z_L) ;  g_L = p - onehot(y)            (gradient of the summed CE loss)
    gW_l = round(a_{l-1}^T @ g_l / 2^16) ;  gb_l = sum_rows(g_l)
    g_{l-1} = round(g_l @ W_l^T / 2^16) * [z_{l-1} > 0]

The loss is summed over the batch; the optimizer (``protocol.exact.optim``) folds the 1/B of
the mean into its shift.
"""

from __future__ import annotations

import torch

from protocol.exact.classifier import (
    classifier_batch,
    cross_entropy_grad,
    held_out_accuracy,
    init_classifier,
)
from protocol.exact.data import dataset_tensors
from protocol.exact.family import Batch, Params
from protocol.exact.fixedpoint import ONE, ExactMatmul, Operand
from protocol.exact.ops.linear import LinearSaved, linear_backward, linear_forward
from protocol.layout import bias_name, weight_name
from protocol.models import ModelSpec
from protocol.spec import JobSpec


def _model(spec: JobSpec) -> ModelSpec:
    assert isinstance(spec.model, ModelSpec)
    return spec.model


def _layers(spec: JobSpec) -> int:
    return len(_model(spec).layer_sizes()) - 1


def forward(
    spec: JobSpec, x: Operand, params: Params, matmul: ExactMatmul
) -> tuple[list[LinearSaved], list[torch.Tensor]]:
    """What each layer saved for the backward pass, and the pre-activations z_1..z_L."""
    layers = _layers(spec)
    saved, pre = [], []
    inputs: Operand = x
    for layer in range(layers):
        weight = matmul.operand(params[weight_name(layer)])
        z, kept = linear_forward(
            matmul, inputs, weight, params[bias_name(layer)], f"forward{layer}"
        )
        saved.append(kept)
        pre.append(z)
        if layer < layers - 1:
            inputs = relu_operand(z)
    return saved, pre


def relu_operand(z: torch.Tensor) -> Operand:
    """``Operand.of(clamp(z, min=0), nonnegative=True)`` with one int64 temporary fewer: the
    conversion first, then the clamp in float64 in place. The same values: |z| < 2^53 (it is
    a requantized exact product plus a bias, far below), so the conversion is exact and
    commutes with max(., 0); the amax of the same float64 values is the same."""
    t64 = z.to(torch.float64)
    t64.clamp_(min=0)
    return Operand(t64, t64.amax())


class MlpFamily:
    name = "mlp"
    metric = "test accuracy"

    def init_params(self, spec: JobSpec, device: torch.device) -> dict[str, torch.Tensor]:
        return init_classifier(spec, device)

    def batch(self, spec: JobSpec, i: int, device: torch.device) -> Batch:
        return classifier_batch(spec, i, device)

    def gradients(
        self, spec: JobSpec, params: Params, batch: Batch, matmul: ExactMatmul
    ) -> dict[str, torch.Tensor]:
        x = batch.inputs_operand or Operand.of(batch.inputs)
        saved, pre = forward(spec, x, params, matmul)
        grad = cross_entropy_grad(pre[-1], batch.targets)
        grads: dict[str, torch.Tensor] = {}
        for layer in reversed(range(len(pre))):
            grad_x, grads[weight_name(layer)], grads[bias_name(layer)] = linear_backward(
                matmul, saved[layer], grad, f"layer{layer}", need_input_grad=layer > 0
            )
            if grad_x is not None:
                # grad_x * [z > 0] in place on the fresh product: x*1 = x, x*0 = 0.
                grad = grad_x.mul_(pre[layer - 1] > 0)
        return grads

    def predict(self, spec: JobSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Class indices predicted for the Q16 inputs ``x``."""
        _, pre = forward(spec, Operand.of(x), params, ExactMatmul())
        return pre[-1].argmax(dim=1)

    def evaluate(self, spec: JobSpec, params: Params) -> float:
        return held_out_accuracy(spec, params, self.predict)

    def native_module(self, spec: JobSpec, params: Params) -> torch.nn.Module:
        sizes = _model(spec).layer_sizes()
        layers: list[torch.nn.Module] = []
        for layer in range(len(sizes) - 1):
            linear = torch.nn.Linear(sizes[layer], sizes[layer + 1])
            with torch.no_grad():
                linear.weight.copy_(params[weight_name(layer)].T.to(torch.float32) / ONE)
                linear.bias.copy_(params[bias_name(layer)].to(torch.float32) / ONE)
            layers += [linear, torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1])

    def native_parameters(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        named: dict[str, torch.Tensor] = {}
        for layer, linear in enumerate(linears):
            named[weight_name(layer)] = linear.weight
            named[bias_name(layer)] = linear.bias
        return named

    def native_loss(self, spec: JobSpec, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = module(batch.inputs.to(torch.float32) / ONE)
        return torch.nn.functional.cross_entropy(logits, batch.targets)

    def native_evaluate(self, spec: JobSpec, module: torch.nn.Module) -> float:
        device = next(module.parameters()).device
        _, _, test_x, test_y = dataset_tensors(spec, device)
        with torch.no_grad():
            predicted = module(test_x.to(torch.float32) / ONE).argmax(dim=1)
        return float((predicted == test_y).float().mean().item())


FAMILY = MlpFamily()

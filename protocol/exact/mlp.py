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
    dense_backward,
    dense_forward,
    held_out_accuracy,
    init_classifier,
    native_accuracy,
    native_dense,
    native_dense_parameters,
)
from protocol.exact.family import Batch, Params, RowSum, rounded
from protocol.exact.fixedpoint import ONE, ExactMatmul, Operand
from protocol.exact.ops.linear import LinearSaved
from protocol.models import ModelSpec
from protocol.spec import JobSpec

PREFIX = "layer"  # parameters layer{l}.weight, layer{l}.bias


def _model(spec: JobSpec) -> ModelSpec:
    assert isinstance(spec.model, ModelSpec)
    return spec.model


def forward(
    spec: JobSpec, x: Operand, params: Params, matmul: ExactMatmul
) -> tuple[list[LinearSaved], list[torch.Tensor]]:
    """What each layer saved for the backward pass, and the pre-activations z_1..z_L."""
    return dense_forward(matmul, x, params, PREFIX, len(_model(spec).layer_sizes()) - 1)


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
        return rounded(self.row_sums(spec, params, batch, matmul))

    def row_sums(
        self, spec: JobSpec, params: Params, batch: Batch, matmul: ExactMatmul
    ) -> dict[str, RowSum]:
        x = batch.inputs_operand or Operand.of(batch.inputs)
        saved, pre = forward(spec, x, params, matmul)
        grads: dict[str, RowSum] = {}
        grad = cross_entropy_grad(pre[-1], batch.targets)
        dense_backward(matmul, saved, pre, grad, PREFIX, grads, need_input_grad=False)
        return {name: grads[name] for name in spec.model.param_shapes()}

    def predict(self, spec: JobSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Class indices predicted for the Q16 inputs ``x``."""
        _, pre = forward(spec, Operand.of(x), params, ExactMatmul())
        return pre[-1].argmax(dim=1)

    def evaluate(self, spec: JobSpec, params: Params) -> float:
        return held_out_accuracy(spec, params, self.predict)

    def native_module(self, spec: JobSpec, params: Params) -> torch.nn.Module:
        return torch.nn.Sequential(*native_dense(params, _model(spec).layer_sizes(), PREFIX))

    def native_parameters(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return native_dense_parameters(module, PREFIX)

    def native_loss(self, spec: JobSpec, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = module(batch.inputs.to(torch.float32) / ONE)
        return torch.nn.functional.cross_entropy(logits, batch.targets)

    def native_evaluate(self, spec: JobSpec, module: torch.nn.Module) -> float:
        return native_accuracy(spec, module)


FAMILY = MlpFamily()

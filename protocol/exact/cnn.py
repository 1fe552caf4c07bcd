"""The CNN family: image [C, H, W] -> (conv, ReLU, pool)... -> flatten -> dense head -> classes.

Math per step i (all Q16 integers, B = batch size; ops in ``protocol.exact.ops``):

    a_0 = x[batch(seed, i)] reshaped to (B, C, H, W)
    per conv layer l:  z_l = conv2d(a_l; conv{l}.weight, conv{l}.bias, stride, padding)
                       a_{l+1} = pool(relu(z_l))         (max or avg, kernel = stride = pool)
    h_0 = flatten(a_L) in torch's (C, H, W) row-major order
    head (dense{j}.weight (fan_in, fan_out)):  u_j = linear(h_j) ; h_{j+1} = relu(u_j)
    p   = softmax_fixed(u_last) ;  g = p - onehot(y)          (gradient of the summed CE loss)

The backward pass is hand-written from the operators' backward functions: linear_backward
through the head (grad * [u > 0] between dense layers), unflatten, the pool's backward, the
ReLU mask [z_l > 0], conv2d_backward (no input gradient for the first layer). Every rounding
and bound is the operators' (see their docstrings); the ReLU masks and the flatten are exact.
The loss is summed over the batch; the optimizer folds the 1/B of the mean into its shift.
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
from protocol.exact.fixedpoint import FRAC, ONE, ExactMatmul, Operand
from protocol.exact.ops.conv import ConvSaved, conv2d_backward, conv2d_forward
from protocol.exact.ops.linear import LinearSaved
from protocol.exact.ops.pool import (
    PoolSaved,
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from protocol.models import CnnSpec, layer_param
from protocol.spec import JobSpec


def _model(spec: JobSpec) -> CnnSpec:
    if not isinstance(spec.model, CnnSpec):
        raise TypeError(f"the cnn family cannot train a {spec.model.family!r} model")
    return spec.model


DENSE = "dense"  # the head's parameters dense{l}.weight, dense{l}.bias


def _conv(kind: str, layer: int) -> str:
    return layer_param("conv", layer, kind)


class _Forward:
    """What the backward pass needs: each conv layer's saved state, pre-activation and pooling,
    the conv stack's output shape, each dense layer's saved state and pre-activation."""

    def __init__(self) -> None:
        self.conv: list[ConvSaved] = []
        self.conv_pre: list[torch.Tensor] = []
        self.pool: list[PoolSaved | None] = []
        self.conv_out_shape: tuple[int, ...] = ()
        self.dense: list[LinearSaved] = []
        self.dense_pre: list[torch.Tensor] = []


def forward(spec: JobSpec, x: Operand, params: Params, matmul: ExactMatmul) -> _Forward:
    """The forward pass of a batch of images x (B, C, H, W); the logits are ``dense_pre[-1]``."""
    model = _model(spec)
    fw = _Forward()
    inputs: Operand = x
    for layer, conv in enumerate(model.conv):
        z, saved = conv2d_forward(
            matmul,
            inputs,
            params[_conv("weight", layer)],
            params[_conv("bias", layer)],
            f"conv{layer}",
            stride=conv.stride,
            padding=conv.padding,
        )
        a = torch.clamp(z, min=0)
        pooled: PoolSaved | None = None
        if conv.pool > 1:
            if conv.pool_type == "max":
                a, pooled = maxpool2d_forward(a, conv.pool)
            else:
                a, pooled = avgpool2d_forward(a, conv.pool, f"pool{layer}")
        fw.conv.append(saved)
        fw.conv_pre.append(z)
        fw.pool.append(pooled)
        inputs = Operand.of(a, nonnegative=True)
    fw.conv_out_shape = tuple(inputs.t64.shape)
    batch = fw.conv_out_shape[0]
    hidden = Operand(inputs.t64.reshape(batch, -1), inputs.maxabs)
    fw.dense, fw.dense_pre = dense_forward(
        matmul, hidden, params, DENSE, len(model.head_sizes()) - 1
    )
    return fw


def _parameter(t: torch.Tensor | None) -> torch.nn.Parameter:
    """A module attribute typed ``Tensor | None`` that is a Parameter here (conv bias=True)."""
    if not isinstance(t, torch.nn.Parameter):
        raise TypeError("expected a Parameter")
    return t


class CnnFamily:
    name = "cnn"
    metric = "test accuracy"

    def init_params(self, spec: JobSpec, device: torch.device) -> dict[str, torch.Tensor]:
        """Weights uniform in ±1/sqrt(fan_in) (fan_in = in_c·k·k for a conv), as the MLP;
        zero biases."""
        return init_classifier(spec, device)

    def batch(self, spec: JobSpec, i: int, device: torch.device) -> Batch:
        """Step i's images (B, C, H, W) and labels; the operand is bounded by the dataset."""
        return classifier_batch(spec, i, device, _model(spec).image)

    def gradients(
        self, spec: JobSpec, params: Params, batch: Batch, matmul: ExactMatmul
    ) -> dict[str, torch.Tensor]:
        return rounded(self.row_sums(spec, params, batch, matmul))

    def row_sums(
        self, spec: JobSpec, params: Params, batch: Batch, matmul: ExactMatmul
    ) -> dict[str, RowSum]:
        model = _model(spec)
        x = batch.inputs_operand or Operand.of(batch.inputs.reshape(-1, *model.image))
        fw = forward(spec, x, params, matmul)
        grad = cross_entropy_grad(fw.dense_pre[-1], batch.targets)
        grads: dict[str, RowSum] = {}
        grad_head = dense_backward(
            matmul, fw.dense, fw.dense_pre, grad, DENSE, grads, need_input_grad=True
        )
        assert grad_head is not None
        grad = grad_head.reshape(fw.conv_out_shape)
        for layer in reversed(range(len(model.conv))):
            pooled = fw.pool[layer]
            if pooled is not None:
                if model.conv[layer].pool_type == "max":
                    grad = maxpool2d_backward(pooled, grad)
                else:
                    grad = avgpool2d_backward(pooled, grad, f"pool{layer}")
            grad = grad * (fw.conv_pre[layer] > 0)
            grad_x, gw, gb = conv2d_backward(
                matmul,
                fw.conv[layer],
                grad,
                f"conv{layer}",
                need_input_grad=layer > 0,
                round_weight_grad=False,
            )
            grads[_conv("weight", layer)] = RowSum(gw, FRAC)
            grads[_conv("bias", layer)] = RowSum(gb, 0)
            if grad_x is not None:
                grad = grad_x
        return {name: grads[name] for name in model.param_shapes()}

    def predict(self, spec: JobSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Class indices predicted for the Q16 inputs ``x`` (rows of features or images)."""
        images = x.reshape(-1, *_model(spec).image)
        fw = forward(spec, Operand.of(images), params, ExactMatmul())
        return fw.dense_pre[-1].argmax(dim=1)

    def evaluate(self, spec: JobSpec, params: Params) -> float:
        return held_out_accuracy(spec, params, self.predict)

    def native_module(self, spec: JobSpec, params: Params) -> torch.nn.Module:
        """nn.Sequential of Conv2d, ReLU, MaxPool2d/AvgPool2d per layer, Flatten, then Linear
        (ReLU between); the same (dequantized) weights — a dense weight (fan_in, fan_out) is
        nn.Linear's (out, in) transposed."""
        model = _model(spec)
        layers: list[torch.nn.Module] = []
        in_c = model.image[0]
        for index, conv in enumerate(model.conv):
            module = torch.nn.Conv2d(
                in_c, conv.channels, conv.kernel, stride=conv.stride, padding=conv.padding
            )
            with torch.no_grad():
                module.weight.copy_(params[_conv("weight", index)].to(torch.float32) / ONE)
                _parameter(module.bias).copy_(params[_conv("bias", index)].to(torch.float32) / ONE)
            layers += [module, torch.nn.ReLU()]
            if conv.pool > 1:
                pool_cls = torch.nn.MaxPool2d if conv.pool_type == "max" else torch.nn.AvgPool2d
                layers.append(pool_cls(conv.pool))
            in_c = conv.channels
        layers.append(torch.nn.Flatten())
        layers += native_dense(params, model.head_sizes(), DENSE)
        return torch.nn.Sequential(*layers).to(next(iter(params.values())).device)

    def native_parameters(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Our names -> the module's Parameters (dense weights in nn.Linear's (out, in))."""
        named: dict[str, torch.Tensor] = {}
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        for index, conv in enumerate(convs):
            named[_conv("weight", index)] = conv.weight
            named[_conv("bias", index)] = _parameter(conv.bias)
        return {**named, **native_dense_parameters(module, DENSE)}

    def _native_images(self, spec: JobSpec, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, *_model(spec).image).to(torch.float32) / ONE

    def native_loss(self, spec: JobSpec, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = module(self._native_images(spec, batch.inputs))
        return torch.nn.functional.cross_entropy(logits, batch.targets)

    def native_evaluate(self, spec: JobSpec, module: torch.nn.Module) -> float:
        return native_accuracy(spec, module, _model(spec).image)


FAMILY = CnnFamily()

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
    held_out_accuracy,
    init_classifier,
)
from protocol.exact.data import dataset_tensors
from protocol.exact.family import Batch, Params
from protocol.exact.fixedpoint import ONE, ExactMatmul, Operand
from protocol.exact.ops.conv import ConvSaved, conv2d_backward, conv2d_forward
from protocol.exact.ops.linear import LinearSaved, linear_backward, linear_forward
from protocol.exact.ops.pool import (
    PoolSaved,
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from protocol.models import CnnSpec
from protocol.spec import JobSpec


def _model(spec: JobSpec) -> CnnSpec:
    if not isinstance(spec.model, CnnSpec):
        raise TypeError(f"the cnn family cannot train a {spec.model.family!r} model")
    return spec.model


def conv_weight_name(layer: int) -> str:
    return f"conv{layer}.weight"


def conv_bias_name(layer: int) -> str:
    return f"conv{layer}.bias"


def dense_weight_name(layer: int) -> str:
    return f"dense{layer}.weight"


def dense_bias_name(layer: int) -> str:
    return f"dense{layer}.bias"


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
            params[conv_weight_name(layer)],
            params[conv_bias_name(layer)],
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
    layers = len(model.head_sizes()) - 1
    for layer in range(layers):
        u, kept = linear_forward(
            matmul,
            hidden,
            params[dense_weight_name(layer)],
            params[dense_bias_name(layer)],
            f"dense{layer}",
        )
        fw.dense.append(kept)
        fw.dense_pre.append(u)
        if layer < layers - 1:
            hidden = Operand.of(torch.clamp(u, min=0), nonnegative=True)
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
        model = _model(spec)
        x = batch.inputs_operand or Operand.of(batch.inputs.reshape(-1, *model.image))
        fw = forward(spec, x, params, matmul)
        grad = cross_entropy_grad(fw.dense_pre[-1], batch.targets)
        grads: dict[str, torch.Tensor] = {}
        for layer in reversed(range(len(fw.dense))):
            grad_h, gw, gb = linear_backward(matmul, fw.dense[layer], grad, f"dense{layer}")
            grads[dense_weight_name(layer)], grads[dense_bias_name(layer)] = gw, gb
            assert grad_h is not None
            grad = grad_h * (fw.dense_pre[layer - 1] > 0) if layer > 0 else grad_h
        grad = grad.reshape(fw.conv_out_shape)
        for layer in reversed(range(len(model.conv))):
            pooled = fw.pool[layer]
            if pooled is not None:
                if model.conv[layer].pool_type == "max":
                    grad = maxpool2d_backward(pooled, grad)
                else:
                    grad = avgpool2d_backward(pooled, grad, f"pool{layer}")
            grad = grad * (fw.conv_pre[layer] > 0)
            grad_x, gw, gb = conv2d_backward(
                matmul, fw.conv[layer], grad, f"conv{layer}", need_input_grad=layer > 0
            )
            grads[conv_weight_name(layer)], grads[conv_bias_name(layer)] = gw, gb
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
                module.weight.copy_(params[conv_weight_name(index)].to(torch.float32) / ONE)
                _parameter(module.bias).copy_(params[conv_bias_name(index)].to(torch.float32) / ONE)
            layers += [module, torch.nn.ReLU()]
            if conv.pool > 1:
                pool_cls = torch.nn.MaxPool2d if conv.pool_type == "max" else torch.nn.AvgPool2d
                layers.append(pool_cls(conv.pool))
            in_c = conv.channels
        layers.append(torch.nn.Flatten())
        sizes = model.head_sizes()
        for index in range(len(sizes) - 1):
            linear = torch.nn.Linear(sizes[index], sizes[index + 1])
            with torch.no_grad():
                linear.weight.copy_(params[dense_weight_name(index)].T.to(torch.float32) / ONE)
                linear.bias.copy_(params[dense_bias_name(index)].to(torch.float32) / ONE)
            layers += [linear, torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1]).to(next(iter(params.values())).device)

    def native_parameters(self, module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        """Our names -> the module's Parameters (dense weights in nn.Linear's (out, in))."""
        named: dict[str, torch.nn.Parameter] = {}
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        for index, conv in enumerate(convs):
            named[conv_weight_name(index)] = _parameter(conv.weight)
            named[conv_bias_name(index)] = _parameter(conv.bias)
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        for index, linear in enumerate(linears):
            named[dense_weight_name(index)] = _parameter(linear.weight)
            named[dense_bias_name(index)] = _parameter(linear.bias)
        return named

    def _native_images(self, spec: JobSpec, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, *_model(spec).image).to(torch.float32) / ONE

    def native_loss(self, spec: JobSpec, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = module(self._native_images(spec, batch.inputs))
        return torch.nn.functional.cross_entropy(logits, batch.targets)

    def native_evaluate(self, spec: JobSpec, module: torch.nn.Module) -> float:
        device = next(module.parameters()).device
        _, _, test_x, test_y = dataset_tensors(spec, device)
        with torch.no_grad():
            predicted = module(self._native_images(spec, test_x)).argmax(dim=1)
        return float((predicted == test_y).float().mean().item())


FAMILY = CnnFamily()

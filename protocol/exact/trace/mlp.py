"""The MLP's step as operators (``protocol.exact.mlp``), and the dense stack the CNN's head
shares.

Per layer l (x_0 the batch's inputs, (B, fan_in) rows; W_l (fan_in, fan_out)):

    forward   W_l^T = transpose(W_l)                          "layer{l}.weight.T"
              z_l   = matmul_nt(x_l, W_l^T, +b_l)             "layer{l}.forward"
              x_l+1 = relu(z_l)                  (not after the last layer: the logits)
    loss      g     = softmax_xent_grad(z_last, targets)      "loss.grad"
    backward  x_l^T, g^T = transpose(x_l), transpose(g)
              gW_l  = matmul_nt(x_l^T, g^T)       (fan_in, fan_out)   "layer{l}.weight.grad"
              gb_l  = row_sum(g^T)                                    "layer{l}.bias.grad"
              g     = relu_grad(matmul_nt(g, W_l), z_l-1)             (l > 0)

Every product is NT: a weight gradient x^T g is a product of the transposed activations, a
bias gradient one row of the transposed gradient. The factors of each bound are the step's:
a batch of inputs is bounded by the whole dataset's max (an attribute), everything else by
its own max.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.exact.trace.builder import Builder, dataset_max
from protocol.models import ModelSpec, layer_param
from protocol.spec import JobSpec
from protocol.trace import Program, Ref

PREFIX = "layer"


@dataclass
class DenseStack:
    """The refs the backward pass of a dense stack needs: each layer's input, its bound
    constant (the dataset's max for a batch of inputs, else None) and its pre-activation."""

    prefix: str
    inputs: list[Ref]
    input_max: list[int | None]
    pre: list[Ref]


def dense_forward(
    b: Builder, x: Ref, prefix: str, layers: int, x_max: int | None = None
) -> DenseStack:
    """``classifier.dense_forward``: linear layers with ReLU between (none after the last)."""
    stack = DenseStack(prefix, [], [], [])
    inputs, bound = x, x_max
    for layer in range(layers):
        weight = b.state(layer_param(prefix, layer, "weight"))
        bias = b.state(layer_param(prefix, layer, "bias"))
        name = f"{prefix}{layer}"
        weight_t = b.transpose(weight, f"{name}.weight.T")
        z = b.matmul_nt(inputs, weight_t, f"{name}.forward", bias=bias, a_max=bound)
        stack.inputs.append(inputs)
        stack.input_max.append(bound)
        stack.pre.append(z)
        if layer < layers - 1:
            inputs = b.add("relu", [z], b.shape(z), f"{name}.relu")
            bound = None
    return stack


def dense_backward(
    b: Builder, stack: DenseStack, grad: Ref, grads: dict[str, Ref], *, need_input_grad: bool
) -> Ref | None:
    """``classifier.dense_backward``: every layer's weight and bias gradient into ``grads``;
    the gradient of the stack's input when ``need_input_grad``."""
    prefix = stack.prefix
    for layer in reversed(range(len(stack.pre))):
        name = f"{prefix}{layer}"
        x_t = b.transpose(stack.inputs[layer], f"{name}.input.T")
        g_t = b.transpose(grad, f"{name}.output_grad.T")
        grads[layer_param(prefix, layer, "weight")] = b.matmul_nt(
            x_t, g_t, f"{name}.weight.grad", a_max=stack.input_max[layer]
        )
        grads[layer_param(prefix, layer, "bias")] = b.row_sum(g_t, f"{name}.bias.grad")
        if layer == 0 and not need_input_grad:
            return None
        weight = b.state(layer_param(prefix, layer, "weight"))
        grad_x = b.matmul_nt(grad, weight, f"{name}.input_grad")
        if layer == 0:
            return grad_x
        pre = stack.pre[layer - 1]
        grad = b.add("relu_grad", [grad_x, pre], b.shape(grad_x), f"{prefix}{layer - 1}.relu.grad")
    return grad


def build(spec: JobSpec) -> Program:
    """The MLP's step: forward, the cross-entropy gradient, backward, the optimizer."""
    model = spec.model
    assert isinstance(model, ModelSpec)
    sizes = model.layer_sizes()
    b = Builder(spec)
    batch = spec.batch_size
    x = b.batch("inputs", (batch, sizes[0]))
    targets = b.batch("targets", (batch,))
    stack = dense_forward(b, x, PREFIX, len(sizes) - 1, dataset_max(spec))
    grad = b.add("softmax_xent_grad", [stack.pre[-1], targets], (batch, sizes[-1]), "loss.grad")
    grads: dict[str, Ref] = {}
    dense_backward(b, stack, grad, grads, need_input_grad=False)
    return b.finish(grads)

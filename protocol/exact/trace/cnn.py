"""The CNN's step as operators (``protocol.exact.cnn``).

Per conv layer l (x_0 the batch's images (B, C, H, W); W_l (O, C, k, k), read as (O, C k k)):

    forward   cols_l = im2col(x_l)                      (B OH OW, C k k)   "conv{l}.im2col"
              z_l    = rearrange(matmul_nt(cols_l, W_l, +b_l))   (B, O, OH, OW)
              a_l    = relu(z_l) ;  x_l+1 = pool(a_l)   (maxpool / avgpool, or a_l at p = 1)
    head      h = flatten(x_L) ; the MLP's dense stack and loss (``trace.mlp``)
    backward  g = unflatten(head's input gradient)
              g = pool_grad(g) ; g = relu_grad(g, z_l)
              G^T = rearrange(g) (O, B OH OW) ;  gW_l = matmul_nt(G^T, cols_l^T) -> (O, C, k, k)
              gb_l = row_sum(G^T)
              (l > 0)  G = rearrange(g) (B OH OW, O) ; W_l^T = rearrange(W_l) (C k k, O)
                       g = col2im(matmul_nt(G, W_l^T, shift 0) as (B, OH, OW, C, k, k))

The bounds are ``conv2d_forward`` / ``conv2d_backward``'s: the patch matrix is bounded by
its image's max (the dataset's for the batch), never by its own.
"""

from __future__ import annotations

import math

from protocol.exact.trace import conv_ops as _conv_ops  # noqa: F401  (registers the operators)
from protocol.exact.trace.builder import Builder, dataset_max
from protocol.exact.trace.mlp import dense_backward, dense_forward
from protocol.models import CnnSpec, layer_param
from protocol.spec import JobSpec
from protocol.trace import Program, Ref

DENSE = "dense"


def _out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _Layer:
    """What one conv layer's backward needs."""

    def __init__(self, x: Ref, x_max: int | None, cols: Ref, z: Ref, a: Ref) -> None:
        self.x, self.x_max, self.cols, self.z, self.a = x, x_max, cols, z, a


def build(spec: JobSpec) -> Program:
    """The CNN's step: convs, the dense head, the cross-entropy gradient, backward, the
    optimizer."""
    model = spec.model
    assert isinstance(model, CnnSpec)
    b = Builder(spec)
    batch = spec.batch_size
    x = b.batch("inputs", (batch, *model.image))
    targets = b.batch("targets", (batch,))
    bound: int | None = dataset_max(spec)
    layers: list[_Layer] = []
    for index, conv in enumerate(model.conv):
        name = f"conv{index}"
        k, s, p = conv.kernel, conv.stride, conv.padding
        _, c, h, w = b.shape(x)
        oh, ow = _out(h, k, s, p), _out(w, k, s, p)
        out_c = conv.channels
        attrs = {"kernel": k, "stride": s, "padding": p}
        cols = b.add("im2col", [x], (batch * oh * ow, c * k * k), f"{name}.im2col", **attrs)
        weight = b.state(layer_param("conv", index, "weight"))
        bias = b.state(layer_param("conv", index, "bias"))
        z2 = b.matmul_nt(
            cols, weight, f"{name}.forward", bias=bias, a_max=bound, a_max_of=_of(x, bound)
        )
        z = b.rearrange(z2, (batch, oh, ow, out_c), (0, 3, 1, 2), f"{name}.forward.nchw")
        a = b.add("relu", [z], b.shape(z), f"{name}.relu")
        layers.append(_Layer(x, bound, cols, z, a))
        x = a
        if conv.pool > 1:
            shape = (batch, out_c, oh // conv.pool, ow // conv.pool)
            kind = "maxpool" if conv.pool_type == "max" else "avgpool"
            x = b.add(kind, [a], shape, f"pool{index}", pool=conv.pool)
        bound = None
    conv_out = b.shape(x)
    flat = math.prod(conv_out[1:])
    hidden = b.rearrange(x, (batch, flat), (0, 1), "flatten")
    stack = dense_forward(b, hidden, DENSE, len(model.head_sizes()) - 1)
    classes = model.head_sizes()[-1]
    grad = b.add("softmax_xent_grad", [stack.pre[-1], targets], (batch, classes), "loss.grad")
    grads: dict[str, Ref] = {}
    head_grad = dense_backward(b, stack, grad, grads, need_input_grad=True)
    assert head_grad is not None
    grad = b.rearrange(head_grad, conv_out, tuple(range(4)), "unflatten.grad")
    for index in reversed(range(len(model.conv))):
        grad = _conv_backward(b, spec, index, layers[index], grad, grads)
    return b.finish(grads)


def _of(x: Ref, bound: int | None) -> Ref | None:
    """The tensor whose max bounds a patch matrix: its image, unless a constant does."""
    return x if bound is None else None


def _conv_backward(
    b: Builder, spec: JobSpec, index: int, layer: _Layer, grad: Ref, grads: dict[str, Ref]
) -> Ref:
    model = spec.model
    assert isinstance(model, CnnSpec)
    conv = model.conv[index]
    name = f"conv{index}"
    if conv.pool > 1:
        pooled = b.shape(layer.a)
        if conv.pool_type == "max":
            grad = b.add(
                "maxpool_grad", [layer.a, grad], pooled, f"pool{index}.grad", pool=conv.pool
            )
        else:
            grad = b.add("avgpool_grad", [grad], pooled, f"pool{index}.backward", pool=conv.pool)
    grad = b.add("relu_grad", [grad, layer.z], b.shape(layer.z), f"{name}.relu.grad")
    batch, out_c, oh, ow = b.shape(layer.z)
    rows = batch * oh * ow
    g_t = b.rearrange(
        grad, (batch, out_c, oh * ow), (1, 0, 2), f"{name}.output_grad.T", (out_c, rows)
    )
    cols_t = b.transpose(layer.cols, f"{name}.im2col.T")
    weight = layer_param("conv", index, "weight")
    w_shape = b.shape(b.state(weight))
    grads[weight] = b.matmul_nt(
        g_t,
        cols_t,
        f"{name}.weight.grad",
        b_max=layer.x_max,
        b_max_of=_of(layer.x, layer.x_max),
        shape=w_shape,
    )
    grads[layer_param("conv", index, "bias")] = b.row_sum(g_t, f"{name}.bias.grad")
    if index == 0:
        return grad
    g2 = b.rearrange(
        grad, (batch, out_c, oh * ow), (0, 2, 1), f"{name}.output_grad.rows", (rows, out_c)
    )
    _, c, k, _ = w_shape
    w_t = b.rearrange(b.state(weight), (out_c, c * k * k), (1, 0), f"{name}.weight.T")
    cols_grad = b.matmul_nt(
        g2, w_t, f"{name}.input_grad.cols", shift=0, shape=(batch, oh, ow, c, k, k)
    )
    attrs = {"kernel": k, "stride": conv.stride, "padding": conv.padding}
    return b.add("col2im", [cols_grad], b.shape(layer.x), f"{name}.input_grad", **attrs)

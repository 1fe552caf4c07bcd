"""Building a step's program: operators appended in execution order, the state's range checks
first, the optimizer's updates last (every family shares both ends).

A family's program (``protocol.exact.trace.mlp``, ``cnn``, ``transformer``) reads its batch
and the pre-state's parameters, appends its forward, loss and backward operators, and hands
the gradient of every parameter to ``Builder.finish``, which appends the optimizer and names
where each tensor of the post-state comes from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from protocol.exact.data import carried_inputs
from protocol.exact.fixedpoint import FRAC
from protocol.exact.optim import adam_grad_limit
from protocol.layout import (
    STEP_KEY,
    adam_m_name,
    adam_v_name,
    expected_shapes,
    momentum_name,
    param_names,
)
from protocol.spec import JobSpec
from protocol.trace import OpNode, Program, Ref

Shape = tuple[int, ...]


class Builder:
    """Appends ``OpNode``s for one spec and tracks every tensor's shape."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.nodes: list[OpNode] = []
        self._state_shapes = expected_shapes(spec)
        self._batch: dict[str, Shape] = {}
        for name, shape in self._state_shapes.items():
            # program.train_step's check_state_range: every non-empty tensor but the counter.
            if name != STEP_KEY and all(shape):
                self.add("state_range", [self.state(name)], (), f"range.{name}")

    def state(self, name: str) -> Ref:
        if name not in self._state_shapes:
            raise KeyError(f"the state has no tensor {name!r}")
        return Ref("state", name)

    def batch(self, name: str, shape: Shape) -> Ref:
        """Step i's batch tensor ``name`` (``protocol.exact.trace.run.batch_tensors``)."""
        self._batch[name] = shape
        return Ref("batch", name)

    def shape(self, ref: Ref) -> Shape:
        if ref.source == "state":
            return self._state_shapes[str(ref.key)]
        if ref.source == "batch":
            return self._batch[str(ref.key)]
        assert isinstance(ref.key, int)
        return self.nodes[ref.key].shape

    def add(
        self, kind: str, inputs: Sequence[Ref], shape: Shape, label: str, **attrs: int | str
    ) -> Ref:
        """Append one operator; its output's ``Ref``."""
        node = OpNode(
            index=len(self.nodes),
            kind=kind,
            inputs=tuple(inputs),
            attrs=tuple(sorted(attrs.items())),
            shape=tuple(shape),
            label=label,
        )
        self.nodes.append(node)
        return Ref("op", node.index)

    # -- shared building blocks ---------------------------------------------------------

    def transpose(self, x: Ref, label: str) -> Ref:
        shape = self.shape(x)
        return self.add("transpose", [x], (*shape[:-2], shape[-1], shape[-2]), label)

    def rearrange(
        self, x: Ref, view: Shape, dims: Sequence[int], label: str, shape: Shape | None = None
    ) -> Ref:
        """x viewed as ``view``, permuted by ``dims``, viewed as ``shape`` (default: the
        permuted shape)."""
        if shape is None:
            shape = tuple(view[d] for d in dims)
        text = ",".join
        return self.add(
            "rearrange",
            [x],
            shape,
            label,
            view=text(str(v) for v in view),
            dims=text(str(d) for d in dims),
        )

    def matmul_nt(
        self,
        a: Ref,
        b: Ref,
        label: str,
        *,
        shift: int = FRAC,
        bias: Ref | None = None,
        a_max: int | None = None,
        b_max: int | None = None,
        a_max_of: Ref | None = None,
        b_max_of: Ref | None = None,
        shape: Shape | None = None,
    ) -> Ref:
        """out[.., i, j] = rshift_round(a[.., i, :] . b[.., j, :], shift) (+ bias[j]), b's
        trailing dimensions read as one row, the product viewed as ``shape``; the bound's
        factors from a constant (``a_max``, ``b_max``) or another tensor (``*_max_of``)."""
        a_shape, b_shape = self.shape(a), self.shape(b)
        lead = a_shape[:-2]
        if b_shape[: len(lead)] != lead or math.prod(b_shape[len(lead) + 1 :]) != a_shape[-1]:
            raise ValueError(f"{label}: matmul_nt of {a_shape} and {b_shape}")
        inputs = [a, b]
        attrs: dict[str, int | str] = {"shift": shift, "bias": int(bias is not None)}
        if bias is not None:
            inputs.append(bias)
        if a_max is not None:
            attrs["a_max"] = a_max
        if b_max is not None:
            attrs["b_max"] = b_max
        if a_max_of is not None:
            attrs["a_max_input"] = len(inputs)
            inputs.append(a_max_of)
        if b_max_of is not None:
            attrs["b_max_input"] = len(inputs)
            inputs.append(b_max_of)
        product = (*a_shape[:-1], b_shape[len(lead)])
        if shape is None:
            shape = product
        elif math.prod(shape) != math.prod(product):
            raise ValueError(f"{label}: a product of {product} viewed as {shape}")
        return self.add("matmul_nt", inputs, shape, label, **attrs)

    def row_sum(self, x: Ref, label: str) -> Ref:
        return self.add("row_sum", [x], (self.shape(x)[0],), label)

    # -- the optimizer and the post-state -------------------------------------------------

    def finish(self, grads: Mapping[str, Ref]) -> Program:
        """Append the optimizer's updates for every parameter's gradient (Q16, of the loss
        summed over the batch) and return the program."""
        names = param_names(self.spec)
        if set(grads) != set(names):
            raise ValueError(f"gradients for {sorted(grads)}, parameters {names}")
        post: dict[str, Ref] = {}
        for name in names:
            if self.spec.optimizer.name == "adamw":
                post.update(self._adamw(name, grads[name]))
            else:
                post.update(self._sgd(name, grads[name]))
        order = [n for n in self._state_shapes if n != STEP_KEY]
        return Program(
            nodes=tuple(self.nodes),
            batch=tuple(self._batch.items()),
            post_state=tuple((n, post[n]) for n in order),
        )

    def _sgd(self, name: str, grad: Ref) -> dict[str, Ref]:
        spec, shape = self.spec, self._state_shapes[name]
        velocity = self.add(
            "sgd_momentum",
            [self.state(momentum_name(name)), grad],
            shape,
            f"{momentum_name(name)}.update",
            mu=spec.optimizer.momentum_q16,
        )
        weight = self.add(
            "sgd_param",
            [self.state(name), velocity],
            shape,
            f"{name}.update",
            shift=spec.loss_terms_log2 - spec.optimizer.lr_log2,
        )
        return {name: weight, momentum_name(name): velocity}

    def _adamw(self, name: str, grad: Ref) -> dict[str, Ref]:
        spec, shape, opt = self.spec, self._state_shapes[name], self.spec.optimizer
        limit = adam_grad_limit(spec)
        m = self.add(
            "adamw_m",
            [self.state(adam_m_name(name)), grad],
            shape,
            f"{adam_m_name(name)}.update",
            beta1=opt.beta1_q16,
            grad_limit=limit,
        )
        v = self.add(
            "adamw_v",
            [self.state(adam_v_name(name)), grad],
            shape,
            f"{adam_v_name(name)}.update",
            beta2=opt.beta2_q16,
            grad_limit=limit,
            batch_log2=spec.loss_terms_log2,
        )
        attrs: dict[str, int | str] = {
            "beta1": opt.beta1_q16,
            "beta2": opt.beta2_q16,
            "eps_log2": opt.eps_log2,
            "lr_log2": opt.lr_log2,
            "batch_log2": spec.loss_terms_log2,
        }
        if opt.weight_decay_log2 is not None:
            attrs["decay_shift"] = -(opt.lr_log2 + opt.weight_decay_log2)
        weight = self.add(
            "adamw_param",
            [self.state(name), m, v, self.state(STEP_KEY)],
            shape,
            f"{name}.update",
            **attrs,
        )
        return {name: weight, adam_m_name(name): m, adam_v_name(name): v}


def dataset_max(spec: JobSpec) -> int:
    """The training inputs' max |value| over the whole dataset: the bound ``ExactMatmul``
    uses for a batch of inputs (``Batch.inputs_operand``), a constant the spec pins."""
    return int(carried_inputs(spec, torch.device("cpu")).maxabs.item())

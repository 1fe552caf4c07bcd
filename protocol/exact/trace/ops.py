"""The shared and dense operators of a step's trace: layout, products, activations, the loss,
sums over the batch, the state's range check and the optimizers' updates.

Each ``run`` reuses the exact VM's own arithmetic (``protocol.exact.fixedpoint``, ``ops``,
``optim``) and makes exactly the run-time bound checks the step makes at the same place, on
the same maxima, so a trace overflows exactly when ``program.step`` skips. Each ``element``
recomputes one output value from the boxes ``reads`` names, with the same integer operations
on fewer values: one row of each operand of a product, one row of a softmax, one value of an
elementwise update.

Kinds (inputs; attributes):

    transpose          x (..., m, n) -> (..., n, m)
    rearrange          x viewed as ``view`` (row-major), dimensions permuted by ``dims``,
                       the result viewed as the node's shape
    matmul_nt          a (..., M, K), b (..., N, K...) [, bias (N,)] [, bound sources];
                       shift, bias, a_max, b_max, a_max_input, b_max_input:
                       out[.., i, j] = rshift_round(a[.., i, :] . b[.., j, :], shift) + bias[j]
    relu               x -> max(x, 0)
    relu_grad          g, z -> g * [z > 0]
    softmax_xent_grad  logits (N, V), targets (N,) -> softmax(logits) - 2^16 onehot(targets)
    row_sum            x (R, ...) -> (R,): the sum of each row (every trailing dimension)
    state_range        t -> 0, () : max|t| < 2^40 or overflow
    sgd_momentum       v, g ; mu
    sgd_param          w, v' ; shift
    adamw_m            m, g ; beta1, grad_limit
    adamw_v            v, g ; beta2, grad_limit, batch_log2
    adamw_param        w, m', v', step ; beta1, beta2, eps_log2, lr_log2, batch_log2
                       [, decay_shift]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from protocol.errors import OverflowBoundError
from protocol.exact.classifier import cross_entropy_grad
from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    STATE_LIMIT,
    SUM_LIMIT,
    ExactMatmul,
    Operand,
    check_sum_bound,
    float_maxabs,
    isqrt_int64,
    maxabs,
    rshift_round_,
)
from protocol.exact.ops.attention import SOFTMAX_INPUT_LIMIT
from protocol.exact.optim import ADAM_SQRT_FRAC, ADAM_V_FRAC, bias_corrections
from protocol.exact.trace.registry import (
    Box,
    Check,
    int_attr,
    point_box,
    register,
    row_box,
    str_attr,
    whole,
)
from protocol.trace import OpNode

Shapes = Sequence[tuple[int, ...]]
Pieces = Sequence[torch.Tensor | None]


def has_attr(node: OpNode, name: str) -> bool:
    return any(key == name for key, _ in node.attrs)


def piece(pieces: Pieces, j: int) -> torch.Tensor:
    """Input j's piece (``reads`` named a box for it)."""
    value = pieces[j]
    if value is None:
        raise ValueError(f"input {j} has no piece")
    return value


def scalar(t: torch.Tensor) -> int:
    return int(t.reshape(-1)[0].item())


# --- layout ---------------------------------------------------------------------------------


def int_list(text: str) -> tuple[int, ...]:
    """A comma-separated attribute ("2,0,1") as integers."""
    return tuple(int(part) for part in text.split(",")) if text else ()


def int_text(values: Sequence[int]) -> str:
    return ",".join(str(v) for v in values)


def unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    """The row-major index of element ``flat`` of ``shape``."""
    index = []
    for dim in reversed(shape):
        index.append(flat % dim)
        flat //= dim
    return tuple(reversed(index))


def ravel(index: Sequence[int], shape: Sequence[int]) -> int:
    flat = 0
    for i, dim in zip(index, shape, strict=True):
        flat = flat * dim + i
    return flat


class Transpose:
    """out = x with its last two dimensions swapped (materialized): a column of x becomes a
    contiguous row, so a product can read it as one. O(1) per element."""

    kind = "transpose"

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return inputs[0].transpose(-2, -1).contiguous()

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box((*index[:-2], index[-1], index[-2])),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return scalar(piece(pieces, 0))


class Rearrange:
    """out = x.reshape(view).permute(dims).reshape(shape), materialized (the conv's layouts,
    a flatten).
    O(1) per element: the output index maps back through the permutation to one input
    value."""

    kind = "rearrange"

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        view = int_list(str_attr(node, "view"))
        dims = int_list(str_attr(node, "dims"))
        return inputs[0].reshape(view).permute(dims).reshape(node.shape).contiguous()

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        view = int_list(str_attr(node, "view"))
        dims = int_list(str_attr(node, "dims"))
        permuted = unravel(ravel(index, node.shape), tuple(view[d] for d in dims))
        view_index = [0] * len(view)
        for out_dim, in_dim in enumerate(dims):
            view_index[in_dim] = permuted[out_dim]
        return (point_box(unravel(ravel(view_index, view), shapes[0])),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return scalar(piece(pieces, 0))


# --- products -------------------------------------------------------------------------------


def _factor(node: OpNode, inputs: Sequence[torch.Tensor], side: str, t64: torch.Tensor) -> float:
    """The max|.| a product's bound uses for operand ``side``: a constant the spec pins
    (``a_max``: the dataset's max, as ``Batch.inputs_operand`` carries it), another input's
    (``<side>_max_input``: the conv's patch matrix is bounded by its image's max), or the
    operand's own."""
    if has_attr(node, f"{side}_max"):
        return float(int_attr(node, f"{side}_max"))
    if has_attr(node, f"{side}_max_input"):
        source = inputs[int_attr(node, f"{side}_max_input")]
        return float(float_maxabs(source.to(torch.float64))) if source.numel() else 0.0
    return float(float_maxabs(t64)) if t64.numel() else 0.0


class MatmulNT:
    """out[.., i, j] = rshift_round(a[.., i, :] . b[.., j, :], shift) (+ bias[j]).

    a is (*lead, M, K); b is (*lead, N, ...) with its trailing dimensions read as one row
    of K (a conv weight (O, C, k, k) is (O, C k k)); the product (*lead, M, N) is
    reshaped to the node's shape (a conv weight's gradient back to (O, C, k, k)). Both
    operands are read by rows (contiguous), so an element costs one dot product of the
    contraction length K. The product is ``ExactMatmul``'s, with its check: max|a| max|b| K
    < 2^53 in float64, (a b) K, the factors as the step forms them (``_factor``)."""

    kind = "matmul_nt"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        sources: list[int | None] = []
        constants: list[int] = []
        for side, own in (("a", 0), ("b", 1)):
            if has_attr(node, f"{side}_max"):
                sources.append(None)
                constants.append(int_attr(node, f"{side}_max"))
            elif has_attr(node, f"{side}_max_input"):
                sources.append(int_attr(node, f"{side}_max_input"))
            else:
                sources.append(own)
        k = int(inputs[0].shape[-1])
        what = "max|a|*max|b|*K"
        return (Check(node.label, what, tuple(sources), tuple(constants), k, 1 << 53, True),)

    def _product_shape(self, node: OpNode, shapes: Shapes) -> tuple[int, ...]:
        a_shape, b_shape = shapes[0], shapes[1]
        lead = a_shape[:-2]
        return (*lead, a_shape[-2], b_shape[len(lead)])

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        a, b = inputs[0], inputs[1]
        lead, k = tuple(a.shape[:-2]), int(a.shape[-1])
        a64 = a.to(torch.float64)
        b64 = b.reshape(*lead, int(b.shape[len(lead)]), k).to(torch.float64)
        a_op = Operand(a64, torch.tensor(_factor(node, inputs, "a", a64), dtype=torch.float64))
        b_max = torch.tensor(_factor(node, inputs, "b", b64), dtype=torch.float64)
        b_op = Operand(b64.transpose(-2, -1), b_max)
        out = rshift_round_(ExactMatmul()(a_op, b_op, node.label), int_attr(node, "shift"))
        if int_attr(node, "bias"):
            out += inputs[2]
        return out.reshape(node.shape)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        product = self._product_shape(node, shapes)
        at = unravel(ravel(index, node.shape), product)
        lead, i, j = at[:-2], at[-2], at[-1]
        boxes: list[Box | None] = [
            row_box(shapes[0], (*lead, i)),
            row_box(shapes[1], (*lead, j)),
        ]
        extra = 2
        if int_attr(node, "bias"):
            boxes.append(point_box((j,)))
            extra = 3
        boxes.extend(None for _ in shapes[extra:])
        return tuple(boxes)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        a: list[int] = piece(pieces, 0).reshape(-1).tolist()
        b: list[int] = piece(pieces, 1).reshape(-1).tolist()
        # Python integers: the exact dot product whatever the pieces (run's, below 2^53,
        # whenever run passes its check).
        total = sum(x * y for x, y in zip(a, b, strict=True))
        shift = int_attr(node, "shift")
        value = (total + (1 << (shift - 1))) >> shift if shift else total
        if int_attr(node, "bias"):
            value += scalar(piece(pieces, 2))
        return value


# --- activations and the loss ---------------------------------------------------------------


class Relu:
    """y = max(x, 0) (exact, no check)."""

    kind = "relu"

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.clamp(inputs[0], min=0)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box(index),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return max(scalar(piece(pieces, 0)), 0)


class ReluGrad:
    """dx = g * [z > 0] (exact, no check)."""

    kind = "relu_grad"

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return inputs[0] * (inputs[1] > 0)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (point_box(index), point_box(index))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return scalar(piece(pieces, 0)) if scalar(piece(pieces, 1)) > 0 else 0


class SoftmaxXentGrad:
    """grad = softmax(z) - 2^16 onehot(y) per row (``classifier.cross_entropy_grad``: the
    integer softmax checks max|z| < 2^61 over the whole logits). An element reads its row
    and its row's target."""

    kind = "softmax_xent_grad"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (Check("softmax", "max|x|", (0,), (), 1, SOFTMAX_INPUT_LIMIT, False),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return cross_entropy_grad(inputs[0], inputs[1])

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (row_box(shapes[0], index[:-1]), point_box(index[:-1]))

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        logits = piece(pieces, 0)
        row = logits.reshape(1, logits.shape[-1])
        grad = cross_entropy_grad(row, piece(pieces, 1).reshape(1))
        return int(grad[0, index[-1]].item())


# --- sums over the batch --------------------------------------------------------------------


class RowSum:
    """out[r] = the exact sum of x[r, ...] (a bias's gradient from the transposed gradient:
    one contiguous row). Checks max|x| N < 2^62 (``check_sum_bound``, N the row's length)."""

    kind = "row_sum"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        terms = math.prod(inputs[0].shape[1:])
        limit = int(SUM_LIMIT)
        return (Check(node.label, "max|g|*N", (0,), (), terms, limit, True),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = inputs[0]
        terms = math.prod(x.shape[1:])
        check_sum_bound(float(maxabs(x)), terms, node.label)
        return x.reshape(x.shape[0], -1).sum(dim=1)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (row_box(shapes[0], index),)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        values: list[int] = piece(pieces, 0).reshape(-1).tolist()
        return sum(values)  # exact (Python integers)


# --- the state's range ----------------------------------------------------------------------


class StateRange:
    """0 if max|t| < 2^40 (``check_state_range``, one tensor of the pre-state), else an
    overflow. Nothing reads its output; its element reads nothing."""

    kind = "state_range"

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return (Check("state", "max|value|", (0,), (), 1, STATE_LIMIT, False),)

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        worst = maxabs(inputs[0])
        if worst >= STATE_LIMIT:
            raise OverflowBoundError("state", float(worst), "max|value|", "2^40")
        return torch.zeros((), dtype=torch.int64, device=inputs[0].device)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return (None,)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        return 0


# --- optimizers -----------------------------------------------------------------------------


class Elementwise:
    """An update whose output element reads the same element of each tensor input (and the
    whole of a 0-d one, the step counter): ``compute`` runs on whole tensors and on
    one-element pieces alike."""

    kind = ""

    def check(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> None:
        """The op's run-time checks on the whole inputs (none by default)."""

    def compute(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        self.check(node, inputs)
        return self.compute(node, inputs)

    def reads(self, node: OpNode, shapes: Shapes, index: tuple[int, ...]) -> tuple[Box | None, ...]:
        return tuple(whole(shape) if not shape else point_box(index) for shape in shapes)

    def element(self, node: OpNode, index: tuple[int, ...], pieces: Pieces) -> int:
        tensors = [piece(pieces, j) for j in range(len(pieces))]
        return scalar(self.compute(node, tensors))


HALF16 = 1 << (FRAC - 1)


class SgdMomentum(Elementwise):
    """v' = rshift_round(mu v, 16) + g (``optim.sgd_update``; no check: |v| < 2^40)."""

    kind = "sgd_momentum"

    def compute(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        v, g = inputs
        velocity = torch.add(v.new_full((), HALF16), v, alpha=int_attr(node, "mu"))
        velocity >>= FRAC
        velocity += g
        return velocity


class SgdParam(Elementwise):
    """w' = w - rshift_round(v', shift), shift = log2 N - lr_log2 (``optim.sgd_update``)."""

    kind = "sgd_param"

    def compute(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        w, velocity = inputs
        shift = int_attr(node, "shift")
        step = velocity + ((1 << (shift - 1)) if shift else 0)
        step >>= shift
        return torch.sub(w, step, out=step)


def _adam_grad_check(node: OpNode) -> tuple[Check, ...]:
    limit = int_attr(node, "grad_limit")
    return (Check("adamw gradient", "max|g|", (1,), (), 1, limit, False),)


def _check_adam_grad(node: OpNode, g: torch.Tensor) -> None:
    """``adamw_update``'s first check, max|g| < adam_grad_limit, on this parameter's
    gradient: the step's check over all gradients fails iff it fails on one of them."""
    grad_max = maxabs(g)
    if grad_max >= int_attr(node, "grad_limit"):
        raise OverflowBoundError("adamw gradient", float(grad_max), "max|g|", "the g^2 limit")


class AdamwM(Elementwise):
    """m' = rshift_round(b1 m + (2^16 - b1) g, 16), after the gradient's check."""

    kind = "adamw_m"

    def check(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> None:
        _check_adam_grad(node, inputs[1])

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return _adam_grad_check(node)

    def compute(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        m, g = inputs
        b1 = int_attr(node, "beta1")
        out = torch.add(m.new_full((), HALF16), m, alpha=b1)
        out.add_(g, alpha=ONE - b1)
        out >>= FRAC
        return out


class AdamwV(Elementwise):
    """v' = rshift_round(b2 v + (2^16 - b2) rshift_round(g^2, 2 log2 N), 16) (Q32, the mean
    gradient's square), after the gradient's check (g^2 < 2^62 needs it)."""

    kind = "adamw_v"

    def check(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> None:
        _check_adam_grad(node, inputs[1])

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        return _adam_grad_check(node)

    def compute(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        v, g = inputs
        b2 = int_attr(node, "beta2")
        batch_log2 = int_attr(node, "batch_log2")
        g2 = rshift_round_(g * g, 2 * batch_log2 + 2 * FRAC - ADAM_V_FRAC)
        out = torch.add(v.new_full((), HALF16), v, alpha=b2)
        out.add_(g2, alpha=ONE - b2)
        out >>= FRAC
        return out


MH_LIMIT = 1 << 55


class AdamwParam(Elementwise):
    """w' = w - rshift_round(w, decay_shift) - div_round(mh 2^(20 + lr_log2), den 2^b), with
    mh = round(m' k1 / 2^16), den = round(isqrt(max(v', 0) 2^8) k2 / 2^16) + 2^(eps_log2 + 20)
    and (k1, k2) step i's bias corrections (``optim.bias_corrections``; i is the pre-state's
    counter, an input). Checks max|m'| k1 < 2^55 first (``adamw_update``'s second check).
    The division is ``adamw_update``'s int64 branch: the same integers as its float64 one."""

    kind = "adamw_param"

    def _scalars(self, node: OpNode, step: torch.Tensor) -> tuple[int, int]:
        return bias_corrections(int_attr(node, "beta1"), int_attr(node, "beta2"), scalar(step))

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
        k1, _ = self._scalars(node, inputs[3])
        return (Check("adamw first moment", "max|m|*k1", (1, None), (k1,), 1, MH_LIMIT, False),)

    def check(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> None:
        k1, _ = self._scalars(node, inputs[3])
        m_max = maxabs(inputs[1])
        if m_max * k1 >= MH_LIMIT:
            raise OverflowBoundError("adamw first moment", float(m_max * k1), "max|m|*k1", "2^55")

    def compute(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        w, m, v, step = inputs
        k1, k2 = self._scalars(node, step)
        batch_log2 = int_attr(node, "batch_log2")
        eps = 1 << (int_attr(node, "eps_log2") + ADAM_SQRT_FRAC)
        num_shift = ADAM_SQRT_FRAC + int_attr(node, "lr_log2")
        quotient = torch.add(m.new_full((), HALF16), m, alpha=k1)
        quotient >>= FRAC
        root = torch.clamp(v, min=0)
        root <<= 2 * ADAM_SQRT_FRAC - ADAM_V_FRAC
        root = isqrt_int64(root, below=1 << 48)
        den = torch.add(root.new_full((), HALF16), root, alpha=k2, out=root)
        den >>= FRAC
        den += eps
        den <<= batch_log2
        quotient <<= num_shift + 1
        quotient += den
        den <<= 1
        quotient = torch.div(quotient, den, rounding_mode="floor", out=quotient)
        if not has_attr(node, "decay_shift"):
            return torch.sub(w, quotient)
        decay_shift = int_attr(node, "decay_shift")
        new_weight = w + ((1 << (decay_shift - 1)) if decay_shift else 0)
        new_weight >>= decay_shift
        torch.sub(w, new_weight, out=new_weight)
        new_weight -= quotient
        return new_weight


for _op in (
    Transpose(),
    Rearrange(),
    MatmulNT(),
    Relu(),
    ReluGrad(),
    SoftmaxXentGrad(),
    RowSum(),
    StateRange(),
    SgdMomentum(),
    SgdParam(),
    AdamwM(),
    AdamwV(),
    AdamwParam(),
):
    register(_op)

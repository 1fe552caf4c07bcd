"""The exact MLP training program: ``init``, the pure ``step``, ``run`` and ``evaluate``.

Math per step i (all Q16 integers, B = batch size, L layers, ReLU between layers):

    a_0 = x[batch(seed, i)]
    z_l = round(a_{l-1} @ W_l / 2^16) + b_l ;  a_l = relu(z_l)   (no ReLU on z_L, the logits)
    p   = softmax_fixed(z_L) ;  g_L = p - onehot(y)            (gradient of the summed CE loss)
    gW_l = round(a_{l-1}^T @ g_l / 2^16) ;  gb_l = sum_rows(g_l)
    g_{l-1} = round(g_l @ W_l^T / 2^16) * [z_{l-1} > 0]
    v <- round(mu * v / 2^16) + g ;  w <- w - round(v / 2^(log2 B - lr_log2))   (sgd)
    AdamW: see ``_adamw_update`` (and docs/protocol.md, "AdamW in fixed point").

The loss is summed over the batch and the 1/B of the mean is folded into the update shift,
so SGD with momentum ``mu`` and learning rate 2^lr_log2 is exactly the usual mean-loss SGD,
computed with one rounding rule and no division.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import torch

from protocol.datasets import check_dataset
from protocol.errors import OverflowBoundError, StateMismatchError
from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    ExactMatmul,
    Operand,
    check_state_range,
    div_round,
    isqrt_int64,
    pow_fixed,
    round_div_int,
    rshift_round,
    rshift_round_,
    softmax_fixed,
)
from protocol.exact.state import State, state_step
from protocol.layout import (
    STEP_KEY,
    adam_m_name,
    adam_v_name,
    bias_name,
    expected_shapes,
    momentum_name,
    optimizer_buffer_names,
    param_names,
    weight_name,
)
from protocol.randomness import batch_indices, random_below
from protocol.spec import JobSpec

StepCallback = Callable[[int, State], None]


def check_state(spec: JobSpec, state: State) -> None:
    """Raise StateMismatchError unless ``state`` has exactly the tensors ``spec`` implies."""
    shapes = expected_shapes(spec)
    if set(state) != set(shapes):
        missing = sorted(set(shapes) - set(state))
        extra = sorted(set(state) - set(shapes))
        raise StateMismatchError(
            f"state tensors differ from the spec: missing {missing}, unexpected {extra}"
        )
    for name, shape in shapes.items():
        tensor = state[name]
        if tensor.dtype != torch.int64 or tuple(tensor.shape) != shape:
            raise StateMismatchError(
                f"{name}: expected int64 {shape}, got {tensor.dtype} {tuple(tensor.shape)}"
            )


@functools.lru_cache(maxsize=16)
def _data_cpu(dataset_id: str, dataset_hash: str) -> tuple[torch.Tensor, ...]:
    ds = check_dataset(dataset_id, dataset_hash)
    return (
        torch.tensor(ds.train_x, dtype=torch.int64),
        torch.tensor(ds.train_y, dtype=torch.int64),
        torch.tensor(ds.test_x, dtype=torch.int64),
        torch.tensor(ds.test_y, dtype=torch.int64),
    )


_DEVICE_DATA: dict[tuple[str, str, str], tuple[torch.Tensor, ...]] = {}


def dataset_tensors(spec: JobSpec, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(train_x, train_y, test_x, test_y) on ``device``, checked against the spec's hash."""
    key = (spec.dataset.id, spec.dataset.hash, str(device))
    if key not in _DEVICE_DATA:
        tensors = _data_cpu(spec.dataset.id, spec.dataset.hash)
        train_x = tensors[0]
        if train_x.shape[1] != spec.model.input_dim:
            raise StateMismatchError(
                f"dataset {spec.dataset.id!r} has {train_x.shape[1]} features; "
                f"model.input_dim is {spec.model.input_dim}"
            )
        if int(tensors[1].max().item()) >= spec.model.classes:
            raise StateMismatchError(
                f"dataset {spec.dataset.id!r} has more classes than model.classes"
            )
        _DEVICE_DATA[key] = tuple(t.to(device) for t in tensors)
    return _DEVICE_DATA[key]


_FLOAT_INPUTS: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _float_inputs(spec: JobSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training inputs carried in float64 and their max |value| (a bound for any batch)."""
    key = (spec.dataset.id, spec.dataset.hash, str(device))
    if key not in _FLOAT_INPUTS:
        op = Operand.of(dataset_tensors(spec, device)[0])
        _FLOAT_INPUTS[key] = (op.t64, op.maxabs)
    return _FLOAT_INPUTS[key]


def init(spec: JobSpec, device: str | torch.device = "cpu") -> State:
    """State 0: uniform weights in ±1/sqrt(fan_in) from the counter-based hash, zero biases."""
    device = torch.device(device)
    dataset_tensors(spec, device)  # fail early on a wrong dataset or shape
    sizes = spec.model.layer_sizes()
    state: State = {STEP_KEY: torch.tensor(0, dtype=torch.int64, device=device)}
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        limit = math.isqrt(ONE * ONE // fan_in)
        values = random_below(
            "init", spec.seed, weight_name(layer), count=fan_in * fan_out, bound=2 * limit + 1
        )
        weight = torch.tensor(values, dtype=torch.int64).reshape(fan_in, fan_out) - limit
        state[weight_name(layer)] = weight.to(device)
        state[bias_name(layer)] = torch.zeros(fan_out, dtype=torch.int64, device=device)
    for name in param_names(spec):
        for buffer in optimizer_buffer_names(spec, name):
            state[buffer] = torch.zeros_like(state[name])
    return state


def _forward(
    spec: JobSpec, x: Operand, weights: list[Operand], state: State, matmul: ExactMatmul
) -> tuple[list[Operand], list[torch.Tensor]]:
    """Layer inputs a_0..a_{L-1} (as operands) and pre-activations z_1..z_L."""
    layers = len(weights)
    inputs = [x]
    pre = []
    for layer in range(layers):
        z = rshift_round_(matmul(inputs[-1], weights[layer], f"forward{layer}"), FRAC)
        z += state[bias_name(layer)]
        pre.append(z)
        if layer < layers - 1:
            inputs.append(Operand.of(torch.clamp(z, min=0), nonnegative=True))
    return inputs, pre


def _weights(spec: JobSpec, state: State) -> list[Operand]:
    return [Operand.of(state[weight_name(layer)]) for layer in range(len(spec.model.hidden) + 1)]


def _batch(spec: JobSpec, i: int, device: torch.device) -> tuple[Operand, torch.Tensor]:
    """Step i's inputs (as an operand bounded by the dataset's max) and labels."""
    train_x, train_y, _, _ = dataset_tensors(spec, device)
    train_x64, x_maxabs = _float_inputs(spec, device)
    index = torch.tensor(
        batch_indices(spec.seed, i, spec.batch_size, train_x.shape[0]), device=device
    )
    return Operand(train_x64[index], x_maxabs), train_y[index]


def step(spec: JobSpec, state: State, i: int) -> State:
    """Apply training step ``i`` to state ``i``; pure (returns a new state).

    The overflow rule (docs/protocol.md, "The exact VM is total"): a step one of whose
    products could leave the exact range changes nothing but the step counter. Every step of
    every valid spec from every valid state therefore has one defined result, the same on
    every device, so a job the ledger accepted can always be completed — a submitter whose
    learning rate diverges gets a model that stopped updating, and no honest solver is slashed
    for it.
    """
    if state_step(state) != i:
        raise StateMismatchError(f"state is at step {state_step(state)}, not {i}")
    if not 0 <= i < spec.steps:
        raise StateMismatchError(f"step {i} is outside 0..{spec.steps - 1}")
    try:
        return _sgd_step(spec, state, i)
    except OverflowBoundError:
        return skipped_step(state)


def skipped_step(state: State) -> State:
    """The state after a step the overflow rule skipped: only the counter moves on."""
    return {**state, STEP_KEY: state[STEP_KEY] + 1}


def _sgd_step(spec: JobSpec, state: State, i: int) -> State:
    """One training step (SGD with momentum or AdamW, by ``spec.optimizer.name``); raises
    OverflowBoundError before any inexact product or any elementwise operation that could
    wrap (a state value past ``STATE_LIMIT``)."""
    check_state_range([t for name, t in state.items() if name != STEP_KEY and t.numel()])
    device = state[STEP_KEY].device
    x, labels = _batch(spec, i, device)
    weights = _weights(spec, state)
    matmul = ExactMatmul()
    inputs, pre = _forward(spec, x, weights, state, matmul)

    grad = softmax_fixed(pre[-1])
    grad[torch.arange(spec.batch_size, device=device), labels] -= ONE
    grads: dict[str, torch.Tensor] = {}
    for layer in reversed(range(len(pre))):
        grad_op = Operand.of(grad)
        grads[weight_name(layer)] = rshift_round_(
            matmul(inputs[layer].T, grad_op, f"grad_weight{layer}"), FRAC
        )
        grads[bias_name(layer)] = grad.sum(dim=0)
        if layer > 0:
            back = matmul(grad_op, weights[layer].T, f"grad_input{layer}")
            grad = rshift_round_(back, FRAC) * (pre[layer - 1] > 0)

    if spec.optimizer.name == "adamw":
        return _adamw_update(spec, state, i, grads)
    mu = spec.optimizer.momentum_q16
    shift = int(math.log2(spec.batch_size)) - spec.optimizer.lr_log2
    new_state: State = {STEP_KEY: state[STEP_KEY] + 1}
    for name, g in grads.items():
        velocity = rshift_round_(state[momentum_name(name)] * mu, FRAC)
        velocity += g
        new_state[momentum_name(name)] = velocity
        new_state[name] = state[name] - rshift_round(velocity, shift)
    return new_state


ADAM_V_FRAC = 32  # v: the squared *mean* gradient (g / B)^2 in Q32, exact before averaging
ADAM_SQRT_FRAC = 20  # sqrt(v), epsilon and the denominator are Q20
BIAS_FRAC = 30  # beta^t and 1 - beta^t are carried in Q30
_MH_LIMIT = 1 << 55  # max|m| * k1 must stay below this (so |m_hat| < 2^40)


def adam_grad_limit(spec: JobSpec) -> int:
    """|g| (Q16, summed over the batch) at or past which an AdamW step is skipped: g^2 must stay
    below 2^62 and the squared mean gradient (Q32) below 2^40, i.e. |g / B| < 16."""
    return min(1 << 31, 1 << (ADAM_V_FRAC - 2 * FRAC + 20 + int(math.log2(spec.batch_size))))


def adamw_scalars(spec: JobSpec, i: int) -> tuple[int, int]:
    """Step i's bias corrections as Q16 integers: (k1, k2) with k1 = round(1 / (1 - beta1^t))
    and k2 = floor(1 / sqrt(1 - beta2^t)), t = i + 1. beta^t is ``pow_fixed`` in Q30; 1 - beta^t
    is clamped below at 1 - beta (its true minimum), so k1 <= 2^32 and k2 <= 2^24."""
    t = i + 1
    one = 1 << BIAS_FRAC
    scale = BIAS_FRAC - FRAC
    b1 = spec.optimizer.beta1_q16 << scale
    b2 = spec.optimizer.beta2_q16 << scale
    bc1 = max(one - pow_fixed(b1, t, BIAS_FRAC), one - b1)
    bc2 = max(one - pow_fixed(b2, t, BIAS_FRAC), one - b2)
    k1 = round_div_int(1 << (BIAS_FRAC + FRAC), bc1)
    k2 = math.isqrt((1 << (BIAS_FRAC + 2 * FRAC)) // bc2)
    return k1, k2


def _adamw_update(spec: JobSpec, state: State, i: int, grads: dict[str, torch.Tensor]) -> State:
    """AdamW on the summed-loss gradients g (Q16), exactly — mean-loss AdamW: m is kept for the
    summed gradient (the 1/B is applied in the division), v for the mean gradient g / B.
    With b1, b2 the Q16 betas, k1, k2 from ``adamw_scalars``, B = 2^b:

        m  <- round((b1 m + (2^16 - b1) g) / 2^16)                        Q16, summed
        v  <- round((b2 v + (2^16 - b2) round(g^2 / 2^2b)) / 2^16)        Q32, mean
        mh  = round(m k1 / 2^16)                                           m / (1 - b1^t)
        den = round(isqrt(max(v, 0) 2^8) k2 / 2^16) + 2^(eps_log2 + 20)   Q20, mean
        w  <- w - round(w / 2^-(lr_log2 + wd_log2)) - div_round(mh 2^(20 + lr_log2), den 2^b)

    Rounding: ``rshift_round`` for powers of two, ``div_round`` (the same rule, half up) for the
    one true division, ``isqrt_int64`` (exact floor) for the square root.

    Bounds (every int64 intermediate < 2^62), given |w|, |m|, |v| < 2^40 (checked on entry):
    |g| < ``adam_grad_limit`` <= 2^31 is checked here (else OverflowBoundError: the step is
    skipped), so b1 m < 2^56, (2^16 - b1) g < 2^47, g^2 < 2^62 and round(g^2 / 2^2b) < 2^40,
    so b2 v < 2^56; the new m and v are convex combinations, at most 2^40; max(v, 0) 2^8 <=
    2^48, so isqrt is in range and <= 2^24; times k2 <= 2^24 is < 2^49; den >= 1 and < 2^34,
    den 2^b < 2^46. The product m k1 (k1 <= 2^32) is checked at run time: max|m| k1 < 2^55 or
    OverflowBoundError, so |mh| < 2^40 and the numerator mh 2^(20 + lr_log2) < 2^60, and
    div_round's 2a + b < 2^62. The decay term is at most |w|; the update may leave |w| past
    2^40 (< 2^61), which the next step's range check turns into a skipped step.
    """
    opt = spec.optimizer
    b1, b2 = opt.beta1_q16, opt.beta2_q16
    k1, k2 = adamw_scalars(spec, i)
    batch_log2 = int(math.log2(spec.batch_size))
    grad_max = max((int(g.abs().amax().item()) for g in grads.values() if g.numel()), default=0)
    if grad_max >= adam_grad_limit(spec):
        raise OverflowBoundError("adamw gradient", float(grad_max), "max|g|", "the g^2 limit")
    new_m: dict[str, torch.Tensor] = {}
    for name, g in grads.items():
        m = state[adam_m_name(name)] * b1
        m += g * (ONE - b1)
        new_m[name] = rshift_round_(m, FRAC)
    m_max = max((int(m.abs().amax().item()) for m in new_m.values() if m.numel()), default=0)
    if m_max * k1 >= _MH_LIMIT:
        raise OverflowBoundError("adamw first moment", float(m_max * k1), "max|m|*k1", "2^55")
    eps = 1 << (opt.eps_log2 + ADAM_SQRT_FRAC)
    num_shift = ADAM_SQRT_FRAC + opt.lr_log2
    root_shift = 2 * ADAM_SQRT_FRAC - ADAM_V_FRAC
    new_state: State = {STEP_KEY: state[STEP_KEY] + 1}
    for name, g in grads.items():
        g2 = rshift_round_(g * g, 2 * batch_log2 + 2 * FRAC - ADAM_V_FRAC)
        g2 *= ONE - b2
        v = state[adam_v_name(name)] * b2
        v += g2
        v = rshift_round_(v, FRAC)
        root = isqrt_int64(torch.clamp(v, min=0) << root_shift)
        den = rshift_round_(root * k2, FRAC)
        den += eps
        den <<= batch_log2
        m = new_m[name]
        numerator = rshift_round_(m * k1, FRAC) << num_shift
        weight = state[name]
        if opt.weight_decay_log2 is not None:
            weight = weight - rshift_round(weight, -(opt.lr_log2 + opt.weight_decay_log2))
        new_state[name] = weight - div_round(numerator, den)
        new_state[adam_m_name(name)] = m
        new_state[adam_v_name(name)] = v
    return new_state


def run(
    spec: JobSpec, state: State, start: int, stop: int, on_step: StepCallback | None = None
) -> State:
    """Steps ``start``..``stop-1`` from state ``start``; ``on_step(i+1, state)`` after each."""
    for i in range(start, stop):
        state = step(spec, state, i)
        if on_step is not None:
            on_step(i + 1, state)
    return state


def predict(spec: JobSpec, state: State, x: torch.Tensor) -> torch.Tensor:
    """Class indices predicted for the Q16 inputs ``x``."""
    matmul = ExactMatmul()
    _, pre = _forward(spec, Operand.of(x), _weights(spec, state), state, matmul)
    return pre[-1].argmax(dim=1)


def evaluate(spec: JobSpec, state: State) -> float:
    """Accuracy on the dataset's fixed test split."""
    device = state[STEP_KEY].device
    _, _, test_x, test_y = dataset_tensors(spec, device)
    correct = int((predict(spec, state, test_x) == test_y).sum().item())
    return correct / int(test_y.shape[0])

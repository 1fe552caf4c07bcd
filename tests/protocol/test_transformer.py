"""The transformer family: exact gradients against float64 autograd of the same integer
weights, training that lowers the loss, the native module's agreement, generation.

(Thread-count determinism and protocol runs of every family are in tests/protocol/test_families.py.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from protocol.errors import OverflowBoundError
from protocol.exact.family import family_of
from protocol.exact.fixedpoint import ONE, ExactMatmul, Operand
from protocol.exact.native import NativeTrainer
from protocol.exact.ops.activations import gelu_reference
from protocol.exact.ops.attention import attention_reference
from protocol.exact.ops.embedding import embedding_backward, embedding_forward
from protocol.exact.ops.linear import linear_backward, linear_forward
from protocol.exact.ops.norm import rms_norm_reference
from protocol.exact.program import evaluate, init, params_of, run, step
from protocol.exact.transformer import (
    FAMILY,
    _merge,
    _merge_qkv,
    _merged_operand,
    _position_grad,
    forward,
)
from protocol.layout import STEP_KEY
from protocol.spec import JobSpec
from services.sim import scenarios

CPU = torch.device("cpu")
MODEL: dict[str, Any] = {
    "family": "transformer",
    "vocab": 76,
    "context": 8,
    "d_model": 16,
    "heads": 2,
    "layers": 2,
    "ff": 32,
}
ADAMW = {"name": "adamw", "lr_log2": -6, "beta1": 0.9, "beta2": 0.99, "eps_log2": -12}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny float64 products on a shared, loaded machine run far faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_spec(**overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "model": MODEL,
        "dataset": {"id": "shakespeare-char"},
        "batch_size": 4,
        "optimizer": ADAMW,
        "steps": 40,
        "checkpoint_interval": 10,
    }
    return scenarios.spec_for({**data, **overrides}, seed=5)


def perturbed_params(spec: JobSpec) -> dict[str, torch.Tensor]:
    """Initial parameters with nonzero biases and gains away from 1, so that every term of
    the backward is exercised."""
    gen = torch.Generator().manual_seed(0)
    params = dict(FAMILY.init_params(spec, CPU))
    for name, value in params.items():
        if name.endswith((".bias", ".gain")):
            noise = torch.randn(value.shape, generator=gen, dtype=torch.float64) * 0.2 * ONE
            params[name] = value + noise.round().long()
    return params


def reference_loss(
    spec: JobSpec, params: dict[str, torch.Tensor], tokens: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The float64 model (the ops' references) on the dequantized weights: summed CE loss and
    the leaves to read gradients from."""
    model = spec.model
    leaves = {k: (v.to(torch.float64) / ONE).requires_grad_(True) for k, v in params.items()}
    b, t = tokens.shape
    d, h = model.d_model, model.heads  # type: ignore[union-attr]
    x = leaves["embed.token"][tokens] + leaves["embed.position"][:t]

    def heads(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(b, t, h, d // h).transpose(1, 2)

    for layer in range(model.layers):  # type: ignore[union-attr]
        p = f"block{layer}."
        a = rms_norm_reference(x, leaves[p + "norm1.gain"])
        qkv = a @ leaves[p + "attn.qkv.weight"] + leaves[p + "attn.qkv.bias"]
        q, k, v = (heads(z) for z in torch.split(qkv, d, dim=-1))
        o = attention_reference(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + o @ leaves[p + "attn.proj.weight"] + leaves[p + "attn.proj.bias"]
        m = rms_norm_reference(x, leaves[p + "norm2.gain"])
        u = m @ leaves[p + "mlp.in.weight"] + leaves[p + "mlp.in.bias"]
        x = x + gelu_reference(u) @ leaves[p + "mlp.out.weight"] + leaves[p + "mlp.out.bias"]
    logits = rms_norm_reference(x, leaves["norm.gain"]) @ leaves["head.weight"]
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
    return loss, leaves


@functools.cache
def trained_params() -> dict[str, torch.Tensor]:
    """The tiny spec's parameters after 40 exact steps."""
    spec = tiny_spec()
    state = run(spec, init(spec), 0, 40)
    assert int(state[STEP_KEY]) == 40
    return dict(params_of(spec, state))


@pytest.mark.parametrize("weights", ["init", "perturbed", "trained"])
def test_gradients_match_float_autograd(weights: str) -> None:
    spec = tiny_spec()
    making: dict[str, Callable[[], dict[str, torch.Tensor]]] = {
        "init": lambda: FAMILY.init_params(spec, CPU),
        "perturbed": lambda: perturbed_params(spec),
        "trained": trained_params,
    }
    params = making[weights]()
    batch = FAMILY.batch(spec, 0, CPU)
    grads = FAMILY.gradients(spec, params, batch, ExactMatmul())
    assert list(grads) == list(spec.model.param_shapes())
    loss, leaves = reference_loss(spec, params, batch.inputs, batch.targets)
    loss.backward()  # type: ignore[no-untyped-call]
    tokens = batch.targets.numel()
    for name, grad in grads.items():
        ref = leaves[name].grad
        assert ref is not None and grad.dtype == torch.int64 and grad.shape == ref.shape
        err = float((grad.to(torch.float64) / ONE - ref).abs().max())
        # Measured: <= 4e-4 of the tensor's largest gradient at init; once trained, the
        # summed gradients cancel more and the per-token error (the integer softmaxes'
        # exp2 polynomial, 2.4e-4 relative; one rounding per product) shows: up to 6e-3
        # of the largest, about 3e-5 per token absolute.
        bound = 5e-3 * float(ref.abs().max()) + 6e-5 * tokens
        assert err <= bound, (name, err, bound)


def test_logits_match_float_reference() -> None:
    spec = tiny_spec()
    params = perturbed_params(spec)
    batch = FAMILY.batch(spec, 3, CPU)
    exact = forward(spec, params, batch.inputs, ExactMatmul()).logits
    assert exact is not None
    loss, _ = reference_loss(spec, params, batch.inputs, batch.targets)
    exact_loss = F.cross_entropy(
        exact.flatten(0, 1).to(torch.float64) / ONE, batch.targets.flatten(), reduction="sum"
    )
    assert abs(float(exact_loss) - float(loss.detach())) <= 1e-3 * float(loss.detach())


def test_init_is_deterministic_with_the_stated_rule() -> None:
    spec = tiny_spec()
    a, b = FAMILY.init_params(spec, CPU), FAMILY.init_params(spec, CPU)
    shapes = spec.model.param_shapes()
    assert list(a) == list(shapes)
    for name, shape in shapes.items():
        assert a[name].dtype == torch.int64 and tuple(a[name].shape) == shape
        assert torch.equal(a[name], b[name])
    d = MODEL["d_model"]
    assert torch.equal(a["norm.gain"], torch.full((d,), ONE))
    assert int(a["block0.attn.qkv.bias"].abs().max()) == 0
    assert int(a["block0.mlp.out.weight"].abs().max()) <= ONE / MODEL["ff"] ** 0.5
    assert int(a["embed.token"].abs().max()) <= ONE / d**0.5
    other = FAMILY.init_params(scenarios.spec_for({**tiny_spec().to_dict()}, seed=6), CPU)
    assert not torch.equal(other["head.weight"], a["head.weight"])


def test_batches_are_next_token_windows() -> None:
    spec = tiny_spec()
    batch = FAMILY.batch(spec, 7, CPU)
    assert batch.inputs.shape == (4, 8) and batch.targets.shape == (4, 8)
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    assert torch.equal(batch.inputs, FAMILY.batch(spec, 7, CPU).inputs)
    assert not torch.equal(batch.inputs, FAMILY.batch(spec, 8, CPU).inputs)


@functools.cache
def exact_losses() -> tuple[float, float]:
    """Validation loss of the tiny spec at step 0 and after 40 exact steps."""
    spec = tiny_spec()
    state = init(spec)
    return evaluate(spec, state), FAMILY.evaluate(spec, trained_params())


def test_a_few_exact_steps_reduce_the_loss() -> None:
    before, after = exact_losses()
    assert after < before - 0.3, (before, after)
    spec = tiny_spec()
    state = init(spec)
    # a step is pure: the same state and index give the same integers
    again = step(spec, state, 0)
    once = step(spec, state, 0)
    assert all(torch.equal(again[k], once[k]) for k in once)


def test_native_module_holds_the_same_weights_and_agrees() -> None:
    spec = tiny_spec()
    params = perturbed_params(spec)
    module = FAMILY.native_module(spec, params)
    named = FAMILY.native_parameters(module)
    assert set(named) == set(params)
    for name, value in params.items():
        tensor = named[name].detach()
        if name.endswith(".weight") and not name.startswith("embed."):
            tensor = tensor.T  # nn.Linear keeps (out, in)
        assert torch.equal(tensor, value.to(torch.float32) / ONE), name
    batch = FAMILY.batch(spec, 1, CPU)
    native = float(FAMILY.native_loss(spec, module, batch).detach())
    exact = forward(spec, params, batch.inputs, ExactMatmul()).logits
    assert exact is not None
    exact_loss = float(
        F.cross_entropy(exact.flatten(0, 1).to(torch.float64) / ONE, batch.targets.flatten())
    )
    # nn.GELU is the erf form; the exact model uses x sigmoid(1.702 x) (within 0.02 of it)
    assert abs(native - exact_loss) <= 0.02 * exact_loss


def test_native_training_reduces_the_loss_like_exact() -> None:
    spec = tiny_spec()
    trainer = NativeTrainer(spec)
    before = trainer.evaluate()
    for _ in range(40):
        trainer.step()
    after = trainer.evaluate()
    assert after < before - 0.3
    _, exact = exact_losses()
    assert abs(exact - after) <= 0.05 * after, (exact, after)


def test_generate_is_deterministic_and_in_vocabulary() -> None:
    spec = tiny_spec()
    params = params_of(spec, init(spec))
    family = family_of(spec)
    assert family is FAMILY
    prompt = FAMILY.encode(spec, "ROMEO.\n")
    out = FAMILY.generate(spec, params, prompt, 12)  # longer than the context: it slides
    assert len(out) == 12 and all(0 <= t < MODEL["vocab"] for t in out)
    assert out == FAMILY.generate(spec, params, prompt, 12)
    assert isinstance(FAMILY.decode(spec, out), str)
    sampled = FAMILY.generate(spec, params, prompt, 12, sample_seed=1)
    assert len(sampled) == 12 and all(0 <= t < MODEL["vocab"] for t in sampled)
    assert sampled == FAMILY.generate(spec, params, prompt, 12, sample_seed=1)
    assert sampled != FAMILY.generate(spec, params, prompt, 12, sample_seed=2)


def test_overflow_raises_and_the_step_is_skipped() -> None:
    spec = tiny_spec()
    params = dict(FAMILY.init_params(spec, CPU))
    params["embed.token"] = params["embed.token"] * (1 << 20)
    batch = FAMILY.batch(spec, 0, CPU)
    with pytest.raises(OverflowBoundError):
        FAMILY.gradients(spec, params, batch, ExactMatmul())
    state = init(spec)
    state["embed.token"] = params["embed.token"]
    after = step(spec, state, 0)
    assert int(after[STEP_KEY]) == 1
    assert all(torch.equal(after[k], state[k]) for k in state if k != STEP_KEY)


def test_merge_qkv_equals_the_cat_of_merged_heads() -> None:
    gen = torch.Generator().manual_seed(4)
    dq, dk, dv = (torch.randint(-(1 << 40), 1 << 40, (2, 3, 5, 4), generator=gen) for _ in "qkv")
    want = torch.cat([_merge(dq), _merge(dk), _merge(dv)], dim=-1)
    assert torch.equal(_merge_qkv(dq, dk, dv), want)
    merged, plain = _merged_operand(dq), Operand.of(_merge(dq))
    assert torch.equal(merged.t64, plain.t64) and torch.equal(merged.maxabs, plain.maxabs)


def test_transposed_weight_gradient_equals_the_plain_one() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(-(1 << 18), 1 << 18, (2, 3, 8), generator=gen)
    w = torch.randint(-(1 << 16), 1 << 16, (8, 4), generator=gen)
    g = torch.randint(-(1 << 20), 1 << 20, (2, 3, 4), generator=gen)
    _, saved = linear_forward(ExactMatmul(), x, w, None, "t")
    want = linear_backward(ExactMatmul(), saved, g, "t")
    for transposed in (False, True):
        got = linear_backward(ExactMatmul(), saved, g, "t", transposed_weight_grad=transposed)
        for a, b in zip(got, want, strict=True):
            assert a is not None and b is not None and torch.equal(a, b) and a.is_contiguous()


def test_position_grad_equals_embedding_backward() -> None:
    gen = torch.Generator().manual_seed(7)
    table = torch.zeros(8, 4, dtype=torch.int64)
    gx = torch.randint(-(1 << 40), 1 << 40, (3, 5, 4), generator=gen)
    _, saved = embedding_forward(table, torch.arange(5).expand(3, 5))
    assert torch.equal(_position_grad(saved, gx), embedding_backward(saved, gx)[0])

"""The decoder-only transformer family: a character-level language model, trained exactly.

Model (pre-norm, ``protocol.models.TransformerSpec``; B windows of T tokens, width d, h heads
of dh = d / h, MLP width F, vocabulary V), all Q16 integers:

    x = embed.token[tokens] + embed.position[0..T-1]                  (ops.embedding)
    per block l:
        a = rmsnorm(x; norm1.gain)                                     (ops.norm)
        q, k, v = split(a @ qkv.weight + qkv.bias) into h heads        (ops.linear)
        x = x + (causal_attention(q, k, v) @ proj.weight + proj.bias)  (ops.attention)
        m = rmsnorm(x; norm2.gain)
        x = x + gelu(m @ in.weight + in.bias) @ out.weight + out.bias  (ops.activations)
    logits = rmsnorm(x; norm.gain) @ head.weight                      (no bias)
    loss = cross-entropy of logits vs the next tokens, SUMMED over the B*T tokens (ops.loss)

The q, k, v columns of ``qkv.weight`` are [q | k | v], each d wide, head j taking columns
j*dh .. (j+1)*dh - 1 of its third; the native module splits its nn.Linear output the same way.

Backward: each operator's hand-written exact backward, in reverse; the residual stream's
gradient is the sum of the branch gradients.

Bounds. Every product goes through ``ExactMatmul``; every operator checks its own elementwise
bounds (``OverflowBoundError``). The residual adds are the only arithmetic of this module:
forward, x enters a block checked by norm1 (|x| < 2^27) and a branch output is a linear
output, |rshift_round(product) + bias| < 2^37 + 2^40 < 2^41, so x + branch < 2^42 (the next
norm checks it again before anything else reads it). Backward, every residual-stream gradient
is a norm's dx, |dx| < 2^57 / 2^12 * 2^4 = 2^49 (the norm's checked |t| < 2^57 and r >= 2^12),
or the sum of at most 2 L + 1 <= 17 of them, < 2^54. No int64 can wrap.

Initialization (deterministic, ``random_below`` through ``classifier.init_weight``): every weight
(fan_in, fan_out) uniform in ±1/sqrt(fan_in); token and position embeddings uniform in
±1/sqrt(d); gains 1 (2^16); biases 0.

Batch i: B window starts from ``batch_indices(seed, i, B, len(train) - T)``; inputs are the T
tokens from each start, targets the T tokens one further.

Evaluation: validation loss (nats per character, mean over tokens) over a fixed set of windows:
the first EVAL_TOKENS / T non-overlapping T-token windows of the validation split (16,384
tokens, about an eighth of it, whatever T), computed in
float64 from the exact logits (reported, never committed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from protocol.exact.classifier import init_weight
from protocol.exact.data import text_dataset, text_tensors
from protocol.exact.family import Batch, Params, RowSum, rounded
from protocol.exact.fixedpoint import (
    FRAC,
    ONE,
    ExactMatmul,
    Operand,
    float_maxabs,
    maxabs,
)
from protocol.exact.ops.activations import GeluSaved, gelu_backward, gelu_forward
from protocol.exact.ops.attention import (
    AttentionSaved,
    attention_backward,
    attention_forward,
    head_operands,
    operand,
    softmax_lastdim,
)
from protocol.exact.ops.embedding import EmbeddingSaved, embedding_backward, embedding_forward
from protocol.exact.ops.linear import LinearSaved, linear_backward, linear_forward
from protocol.exact.ops.loss import cross_entropy_backward, cross_entropy_forward
from protocol.exact.ops.norm import RmsNormSaved, rms_norm_backward, rms_norm_forward
from protocol.models import TransformerSpec
from protocol.randomness import batch_indices, random_below
from protocol.spec import JobSpec

EVAL_TOKENS = 16384  # validation tokens scored: EVAL_TOKENS / T windows from the start
_EVAL_CHUNK_TOKENS = 2048  # tokens per forward pass in evaluation
NORM_EPS = 2.0**-16  # the exact norm's eps on the mean square (ops.norm.EPS_Q32)


def _model(spec: JobSpec) -> TransformerSpec:
    model = spec.model
    if not isinstance(model, TransformerSpec):
        raise TypeError(f"not a transformer spec: {model.family}")
    return model


@dataclass
class _Block:
    norm1: RmsNormSaved | None = None
    qkv: LinearSaved | None = None
    attn: AttentionSaved | None = None
    proj: LinearSaved | None = None
    norm2: RmsNormSaved | None = None
    mlp_in: LinearSaved | None = None
    gelu: GeluSaved | None = None
    mlp_out: LinearSaved | None = None


@dataclass
class _Forward:
    token: EmbeddingSaved | None = None
    position: EmbeddingSaved | None = None
    blocks: list[_Block] = field(default_factory=list)
    norm: RmsNormSaved | None = None
    head: LinearSaved | None = None
    logits: torch.Tensor | None = None  # (B, t, V)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, t, d) -> (B, h, t, dh)."""
    b, t, d = x.shape
    return x.reshape(b, t, heads, d // heads).transpose(1, 2)


def _merged_operand(o: torch.Tensor) -> Operand:
    """``operand(_merge(o))``: the heads (B, h, T, dh) merged to (B, T, d) straight into a
    float64 buffer (one strided copy-and-convert instead of a merge copy then a conversion);
    the same float64 values, and the same maxabs (``float_maxabs``)."""
    b, h, t, dh = o.shape
    out = torch.empty((b, t, h * dh), dtype=torch.float64, device=o.device)
    out.view(b, t, h, dh).copy_(o.transpose(1, 2))
    return Operand(out, float_maxabs(out))


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, h, t, dh) -> (B, t, d)."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


def _gelu_input_bound(bias: torch.Tensor) -> int:
    """An upper bound on max|z| of a linear output z = rshift_round(P, 16) + b: ``ExactMatmul``
    made P only if |P| < 2^53, so |rshift_round(P, 16)| <= (2^53 + 2^15) / 2^16 < 2^37 + 1;
    plus max|b| (a 256-element scan instead of a scan of z)."""
    return (1 << 37) + 1 + maxabs(bias)


# The mlp.out layer's input gradient is rshift_round(P, 16) of a product ExactMatmul made
# (|P| < 2^53), so it is at most 2^37 + 1 in magnitude: gelu_backward's bound, proved.
_GRAD_INPUT_BOUND = (1 << 37) + 1


def forward(spec: JobSpec, params: Params, tokens: torch.Tensor, matmul: ExactMatmul) -> _Forward:
    """The exact forward pass over token windows (B, t), t <= T; keeps what backward needs.

    Weights enter as ``matmul.operand(w)`` (their max from the step's range check when known),
    each converted once for the forward and the backward. q, k, v enter the attention as
    ``head_operands`` of the qkv output: one float64 copy in head layout instead of three."""
    model = _model(spec)
    fw = _Forward()
    b, t = tokens.shape
    positions = torch.arange(t, device=tokens.device).expand(b, t)
    x_tok, fw.token = embedding_forward(params["embed.token"], tokens)
    x_pos, fw.position = embedding_forward(params["embed.position"], positions)
    x = x_tok.add_(x_pos)  # the lookup's fresh copy
    for layer in range(model.layers):
        p = f"block{layer}."
        blk = _Block()
        a, blk.norm1 = rms_norm_forward(x, params[p + "norm1.gain"])
        qkv, blk.qkv = linear_forward(
            matmul,
            operand(a),
            matmul.operand(params[p + "attn.qkv.weight"]),
            params[p + "attn.qkv.bias"],
            p + "qkv",
        )
        q, k, v = head_operands(qkv, model.heads)
        o, blk.attn = attention_forward(matmul, q, k, v, p + "attn")
        out, blk.proj = linear_forward(
            matmul,
            _merged_operand(o),
            matmul.operand(params[p + "attn.proj.weight"]),
            params[p + "attn.proj.bias"],
            p + "proj",
        )
        x += out  # x is this function's own tensor (the lookup's copy); no norm saves x
        m, blk.norm2 = rms_norm_forward(x, params[p + "norm2.gain"])
        in_bias = params[p + "mlp.in.bias"]
        u, blk.mlp_in = linear_forward(
            matmul,
            operand(m),
            matmul.operand(params[p + "mlp.in.weight"]),
            in_bias,
            p + "mlp.in",
        )
        hidden, blk.gelu = gelu_forward(u, max_abs=_gelu_input_bound(in_bias))
        out, blk.mlp_out = linear_forward(
            matmul,
            operand(hidden),
            matmul.operand(params[p + "mlp.out.weight"]),
            params[p + "mlp.out.bias"],
            p + "mlp.out",
        )
        x += out
        fw.blocks.append(blk)
    xf, fw.norm = rms_norm_forward(x, params["norm.gain"])
    fw.logits, fw.head = linear_forward(
        matmul, operand(xf), matmul.operand(params["head.weight"]), None, "head"
    )
    return fw


def _linear_sums(
    matmul: ExactMatmul,
    saved: LinearSaved,
    grad: torch.Tensor,
    where: str,
    grads: dict[str, RowSum],
    name: str,
    *,
    transposed_weight_grad: bool = False,
) -> torch.Tensor:
    """``linear_backward`` with its weight gradient kept as a row sum (``RowSum``, shift 16)
    and its bias gradient (a plain sum), under ``name``.weight / .bias; returns grad_x."""
    g, gw, gb = linear_backward(
        matmul,
        saved,
        grad,
        where,
        transposed_weight_grad=transposed_weight_grad,
        round_weight_grad=False,
    )
    grads[name + ".weight"], grads[name + ".bias"] = RowSum(gw, FRAC), RowSum(gb, 0)
    assert g is not None
    return g


def _norm_sums(
    saved: RmsNormSaved, grad: torch.Tensor, grads: dict[str, RowSum], name: str
) -> torch.Tensor:
    """``rms_norm_backward`` with its gain gradient kept as a row sum (shift 16); grad_x."""
    g, gain = rms_norm_backward(saved, grad, round_gain_grad=False)
    grads[name] = RowSum(gain, FRAC)
    return g


def _backward(
    spec: JobSpec, fw: _Forward, grad_logits: torch.Tensor, matmul: ExactMatmul
) -> dict[str, RowSum]:
    model = _model(spec)
    grads: dict[str, RowSum] = {}
    assert fw.head is not None and fw.norm is not None
    assert fw.token is not None and fw.position is not None
    g, head, _ = linear_backward(matmul, fw.head, grad_logits, "head", round_weight_grad=False)
    grads["head.weight"] = RowSum(head, FRAC)
    assert g is not None
    gx = _norm_sums(fw.norm, g, grads, "norm.gain")
    for layer in reversed(range(model.layers)):
        p = f"block{layer}."
        blk = fw.blocks[layer]
        assert blk.mlp_out and blk.gelu and blk.mlp_in and blk.norm2
        assert blk.proj and blk.attn and blk.qkv and blk.norm1
        g = _linear_sums(
            matmul,
            blk.mlp_out,
            gx,
            p + "mlp.out",
            grads,
            p + "mlp.out",
            transposed_weight_grad=True,
        )
        (g,) = gelu_backward(blk.gelu, g, max_abs=_GRAD_INPUT_BOUND)
        g = _linear_sums(matmul, blk.mlp_in, g, p + "mlp.in", grads, p + "mlp.in")
        g = _norm_sums(blk.norm2, g, grads, p + "norm2.gain")
        gx += g  # gx is a fresh dx or sum of this function's; its reader above is done
        g = _linear_sums(matmul, blk.proj, gx, p + "proj", grads, p + "attn.proj")
        dq, dk, dv = attention_backward(matmul, blk.attn, _heads(g, model.heads), p + "attn")
        g = _linear_sums(matmul, blk.qkv, _merge_qkv(dq, dk, dv), p + "qkv", grads, p + "attn.qkv")
        g = _norm_sums(blk.norm1, g, grads, p + "norm1.gain")
        gx += g  # likewise
    (token,) = embedding_backward(fw.token, gx)
    grads["embed.token"] = RowSum(token, 0)
    grads["embed.position"] = RowSum(_position_grad(fw.position, gx), 0)
    return {name: grads[name] for name in model.param_shapes()}


def _position_grad(saved: EmbeddingSaved, gx: torch.Tensor) -> torch.Tensor:
    """``embedding_backward(saved, gx)`` for the position ids arange(t) of every window: the
    index_add puts sum_b gx[b, p] in row p < t and leaves rows t.. zero, which is gx.sum(0)
    padded with zeros (the same exact int64 sums). Its bound check (max|gx| * B t < 2^62) is
    the token embedding's, on the same gx and count, made just before: not repeated."""
    t, d = gx.shape[1:]
    grad = torch.zeros(saved.rows, d, dtype=gx.dtype, device=gx.device)
    torch.sum(gx, dim=0, out=grad[:t])
    return grad


def _merge_qkv(dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor) -> torch.Tensor:
    """(B, T, 3d) = cat([_merge(dq), _merge(dk), _merge(dv)], -1), by one copy of each into
    its place (the same elements at the same positions as the cat)."""
    b, h, t, dh = dq.shape
    out = torch.empty((b, t, 3, h, dh), dtype=dq.dtype, device=dq.device)
    parts = out.permute(2, 0, 3, 1, 4)  # (3, B, h, T, dh) view
    parts[0].copy_(dq)
    parts[1].copy_(dk)
    parts[2].copy_(dv)
    return out.view(b, t, 3 * h * dh)


def _windows(tokens: torch.Tensor, starts: torch.Tensor, t: int) -> tuple[torch.Tensor, ...]:
    index = starts[:, None] + torch.arange(t, device=tokens.device)
    return tokens[index], tokens[index + 1]


def _eval_windows(spec: JobSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    t = _model(spec).context
    _, validation = text_tensors(spec, device)
    count = max(1, min(EVAL_TOKENS // t, (validation.shape[0] - 1) // t))
    starts = torch.arange(count, device=device) * t
    inputs, targets = _windows(validation, starts, t)
    return inputs, targets


class TransformerFamily:
    name = "transformer"
    metric = "validation loss"

    def init_params(self, spec: JobSpec, device: torch.device) -> dict[str, torch.Tensor]:
        """Weights (fan_in, fan_out) uniform in ±1/sqrt(fan_in); embeddings uniform in
        ±1/sqrt(d); gains 1; biases 0 — from the counter-based hash of (seed, name)."""
        model = _model(spec)
        text_tensors(spec, device)  # fail early on a wrong dataset or vocabulary
        params = {}
        for name, shape in model.param_shapes().items():
            if name.startswith("embed."):
                value = init_weight(spec, name, model.d_model, shape)
            elif name.endswith(".weight"):
                value = init_weight(spec, name, shape[0], shape)
            elif name.endswith(".gain"):
                value = torch.full(shape, ONE, dtype=torch.int64)
            else:
                value = torch.zeros(shape, dtype=torch.int64)
            params[name] = value.to(device)
        return params

    def batch(self, spec: JobSpec, i: int, device: torch.device) -> Batch:
        """B windows of T tokens (inputs) and the T tokens one further (targets)."""
        t = _model(spec).context
        train, _ = text_tensors(spec, device)
        starts = batch_indices(spec.seed, i, spec.batch_size, train.shape[0] - t)
        inputs, targets = _windows(train, torch.tensor(starts, device=device), t)
        return Batch(inputs, targets)

    def gradients(
        self, spec: JobSpec, params: Params, batch: Batch, matmul: ExactMatmul
    ) -> dict[str, torch.Tensor]:
        """Exact Q16 gradients of the cross-entropy summed over the B*T tokens."""
        return rounded(self.row_sums(spec, params, batch, matmul))

    def row_sums(
        self, spec: JobSpec, params: Params, batch: Batch, matmul: ExactMatmul
    ) -> dict[str, RowSum]:
        """``gradients`` before their last rounding (``RowSum``)."""
        fw = forward(spec, params, batch.inputs, matmul)
        assert fw.logits is not None
        vocab = fw.logits.shape[-1]
        # the logits and P are this function's own: the softmax and the gradient in place
        _, saved = cross_entropy_forward(
            fw.logits.reshape(-1, vocab), batch.targets.reshape(-1), inplace=True
        )
        (grad,) = cross_entropy_backward(saved, inplace=True)
        return _backward(spec, fw, grad.reshape(fw.logits.shape), matmul)

    def logits(self, spec: JobSpec, params: Params, tokens: torch.Tensor) -> torch.Tensor:
        """Exact Q16 logits (B, t, V) of token windows (B, t), t <= T."""
        fw = forward(spec, params, tokens, ExactMatmul())
        assert fw.logits is not None
        return fw.logits

    def evaluate(self, spec: JobSpec, params: Params) -> float:
        """Mean validation cross-entropy (nats per character) over the fixed windows."""
        device = next(iter(params.values())).device
        inputs, targets = _eval_windows(spec, device)
        total = 0.0
        chunk_windows = max(1, _EVAL_CHUNK_TOKENS // inputs.shape[1])
        for start in range(0, inputs.shape[0], chunk_windows):
            logits = self.logits(spec, params, inputs[start : start + chunk_windows])
            z = logits.to(torch.float64) / ONE
            chunk = targets[start : start + chunk_windows]
            total += float(F.cross_entropy(z.flatten(0, 1), chunk.flatten(), reduction="sum"))
        return total / targets.numel()

    def generate(
        self,
        spec: JobSpec,
        params: Params,
        prompt: list[int],
        n: int,
        *,
        sample_seed: int | None = None,
    ) -> list[int]:
        """``n`` tokens after ``prompt`` from the exact logits (the last T tokens as context):
        greedy (the first maximal logit), or, with ``sample_seed``, sampled from the integer
        softmax with ``random_below("generate", sample_seed, k)`` for the k-th token — either
        way the same tokens on every device."""
        t = _model(spec).context
        device = next(iter(params.values())).device
        tokens = list(prompt) or [0]
        out: list[int] = []
        for k in range(n):
            window = torch.tensor([tokens[-t:]], dtype=torch.int64, device=device)
            last = self.logits(spec, params, window)[0, -1:]
            if sample_seed is None:
                nxt = int(last[0].argmax().item())
            else:
                cumulative = torch.cumsum(softmax_lastdim(last)[0], dim=0)
                draw = random_below(
                    "generate", sample_seed, k, count=1, bound=int(cumulative[-1].item())
                )[0]
                target = torch.tensor([draw], dtype=torch.int64, device=device)
                nxt = int(torch.searchsorted(cumulative, target, right=True).item())
            tokens.append(nxt)
            out.append(nxt)
        return out

    def native_module(self, spec: JobSpec, params: Params) -> torch.nn.Module:
        """``NativeTransformer`` holding the same (dequantized) parameters; our (fan_in,
        fan_out) weights are nn.Linear's (out, in) transposed."""
        module = NativeTransformer(_model(spec))
        named = self.native_parameters(module)
        with torch.no_grad():
            for name, param in named.items():
                value = params[name].to(torch.float32) / ONE
                param.copy_(value.T if _is_linear_weight(name) else value)
        return module.to(next(iter(params.values())).device)

    def native_parameters(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Our names -> the module's Parameters (nn.Linear weights are (out, in))."""
        assert isinstance(module, NativeTransformer)
        named: dict[str, torch.Tensor] = {
            "embed.token": module.token.weight,
            "embed.position": module.position.weight,
        }
        for layer, blk in enumerate(module.blocks):
            assert isinstance(blk, NativeBlock)
            p = f"block{layer}."
            named[p + "norm1.gain"] = blk.norm1.weight
            named[p + "attn.qkv.weight"] = blk.qkv.weight
            named[p + "attn.qkv.bias"] = blk.qkv.bias
            named[p + "attn.proj.weight"] = blk.proj.weight
            named[p + "attn.proj.bias"] = blk.proj.bias
            named[p + "norm2.gain"] = blk.norm2.weight
            named[p + "mlp.in.weight"] = blk.mlp_in.weight
            named[p + "mlp.in.bias"] = blk.mlp_in.bias
            named[p + "mlp.out.weight"] = blk.mlp_out.weight
            named[p + "mlp.out.bias"] = blk.mlp_out.bias
        named["norm.gain"] = module.norm.weight
        named["head.weight"] = module.head.weight
        return named

    def native_loss(self, spec: JobSpec, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = module(batch.inputs)
        return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten())

    def native_evaluate(self, spec: JobSpec, module: torch.nn.Module) -> float:
        device = next(module.parameters()).device
        inputs, targets = _eval_windows(spec, device)
        with torch.no_grad():
            logits = module(inputs).to(torch.float64)
        return float(F.cross_entropy(logits.flatten(0, 1), targets.flatten()))

    def native_generate(
        self, spec: JobSpec, module: torch.nn.Module, prompt: list[int], n: int
    ) -> list[int]:
        """Greedy decoding with the float32 module (not deterministic across devices)."""
        t = _model(spec).context
        device = next(module.parameters()).device
        tokens = list(prompt) or [0]
        with torch.no_grad():
            for _ in range(n):
                window = torch.tensor([tokens[-t:]], dtype=torch.int64, device=device)
                tokens.append(int(module(window)[0, -1].argmax().item()))
        return tokens[len(prompt) or 1 :]

    def decode(self, spec: JobSpec, tokens: list[int]) -> str:
        return text_dataset(spec).decode(tokens)

    def encode(self, spec: JobSpec, text: str) -> list[int]:
        return list(text_dataset(spec).encode(text))


def _is_linear_weight(name: str) -> bool:
    return name.endswith(".weight") and not name.startswith("embed.")


class SigmoidGELU(torch.nn.Module):
    """GELU in the sigmoid form the exact VM uses, x sigmoid(1.702 x), so native and exact
    train the same model (``nn.GELU`` is the erf form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class NativeBlock(torch.nn.Module):
    """Pre-norm block: causal self-attention and a GELU MLP, each added to the residual."""

    def __init__(self, model: TransformerSpec) -> None:
        super().__init__()
        d = model.d_model
        self.heads = model.heads
        self.norm1 = torch.nn.RMSNorm(d, eps=NORM_EPS)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.proj = torch.nn.Linear(d, d)
        self.norm2 = torch.nn.RMSNorm(d, eps=NORM_EPS)
        self.mlp_in = torch.nn.Linear(d, model.ff)
        self.act = SigmoidGELU()
        self.mlp_out = torch.nn.Linear(model.ff, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(o.transpose(1, 2).reshape(b, t, d))
        out: torch.Tensor = x + self.mlp_out(self.act(self.mlp_in(self.norm2(x))))
        return out


class NativeTransformer(torch.nn.Module):
    """The idiomatic float32 model: nn.Embedding, pre-norm blocks (nn.RMSNorm, nn.Linear,
    scaled_dot_product_attention, the sigmoid GELU), final nn.RMSNorm, a bias-free nn.Linear
    head."""

    def __init__(self, model: TransformerSpec) -> None:
        super().__init__()
        self.token = torch.nn.Embedding(model.vocab, model.d_model)
        self.position = torch.nn.Embedding(model.context, model.d_model)
        self.blocks = torch.nn.ModuleList(NativeBlock(model) for _ in range(model.layers))
        self.norm = torch.nn.RMSNorm(model.d_model, eps=NORM_EPS)
        self.head = torch.nn.Linear(model.d_model, model.vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.token(tokens) + self.position(torch.arange(t, device=tokens.device))
        for blk in self.blocks:
            x = blk(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits


FAMILY = TransformerFamily()

__all__ = ["FAMILY", "NativeTransformer", "TransformerFamily", "forward"]

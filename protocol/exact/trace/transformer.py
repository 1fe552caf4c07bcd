"""The transformer's step as operators (``protocol.exact.transformer``), one library call at
a time, on ``builder.Builder``.

Layout: the residual stream and every activation between attentions are token rows
(B T, features); attention works per (window, head) on (B, h, T, dh) tensors cut from the
qkv rows (``split_heads``) and put back as rows (``merge_heads``). Per block l:

    forward   n1 = rms_norm(x) ; a = gain_mul(n1, norm1.gain)
              qkv = matmul_nt(a, transpose(qkv.weight), + qkv.bias)        (B T, 3d)
              q, k, v = split_heads(qkv) ; v^T = split_heads(qkv, transposed)
              P = causal_softmax(attention_scores(q, k))                   (B, h, T, T)
              o = merge_heads(matmul_nt(P, v^T))                           (B T, d)
              x1 = residual_add(x, matmul_nt(o, transpose(proj.weight), + proj.bias))
              n2 = rms_norm(x1) ; m = gain_mul(n2, norm2.gain)
              u = matmul_nt(m, transpose(in.weight), + in.bias) ; h = gelu(u, in.bias)
              x' = residual_add(x1, matmul_nt(h, transpose(out.weight), + out.bias))
    head      logits = matmul_nt(gain_mul(rms_norm(x_L), norm.gain), transpose(head.weight))
              g = softmax_xent_grad(logits, targets as rows)
    backward  a linear layer (x, g, W): dW = matmul_nt(x^T, g^T), db = row_sum(g^T),
              dx = matmul_nt(g, W); a norm: dgain = rms_gain_grad(dy^T, n^T),
              dn = gain_mul(dy, gain), c = rms_mean_dot(dn, n), t = rms_center(dn, n, c),
              dx = rms_norm_dx(t, x); gelu_backward(u, in.bias, g);
              attention: dv = matmul_nt(P^T, G^T), dP = matmul_nt(G, v),
              dS = attention_softmax_backward(P, dP), dq = matmul_nt(dS, k^T),
              dk = matmul_nt(dS^T, q^T), dqkv = merge_heads(dq, dk, dv);
              the residual gradients residual_add; last embedding_grad and position_grad
              from the stream's gradient transposed (d, B T).

Every product is NT (both operands read by rows), with ``ExactMatmul``'s check on the same
tensors as the family's (a weight's transpose has the weight's max; q, k, v are the qkv
thirds ``head_operands`` bounds). The set of checks is the family's, so the step overflows
exactly when ``program.step`` skips it, with one check left out: ``linear_backward`` also
checks the head's (unused) bias-gradient sum, max|g| B T < 2^62 in float64, which cannot fail
(the head's gradient is softmax - onehot, |g| <= 2^16, and B T <= 2^22, ``JobSpec``). Two are
repeated where an operator needs them and another makes them (the gelu input bound, in its
backward; the embedding gradient's sum bound, for the positions): the same condition on the
same values, so the set of skipped steps is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import protocol.exact.trace.transformer_ops  # noqa: F401  (registers the operators)
from protocol.exact.ops.attention import attention_scale
from protocol.exact.trace.builder import Builder
from protocol.models import TransformerSpec
from protocol.spec import JobSpec
from protocol.trace import Program, Ref


@dataclass
class _Block:
    """The refs of one block's forward that its backward reads."""

    x: Ref
    n1: Ref
    a: Ref
    qkv: Ref
    q: Ref
    k: Ref
    v: Ref
    p: Ref
    o: Ref
    x1: Ref
    n2: Ref
    m: Ref
    u: Ref
    h: Ref


@dataclass
class _Transformer:
    """The program of one spec under construction: shapes and the gradients so far."""

    spec: JobSpec
    b: Builder
    grads: dict[str, Ref] = field(default_factory=dict)

    @property
    def model(self) -> TransformerSpec:
        model = self.spec.model
        assert isinstance(model, TransformerSpec)
        return model

    @property
    def rows(self) -> int:
        return self.spec.batch_size * self.model.context

    def linear(self, x: Ref, name: str, *, bias: bool = True) -> Ref:
        """``linear_forward``: rshift_round(x W, 16) + b as x times W's transpose."""
        b = self.b
        weight_t = b.transpose(b.state(name + ".weight"), f"{name}.weight.T")
        bias_ref = b.state(name + ".bias") if bias else None
        return b.matmul_nt(x, weight_t, f"{name}.forward", bias=bias_ref)

    def linear_backward(self, x: Ref, grad: Ref, name: str, *, bias: bool = True) -> Ref:
        """``linear_backward``: the weight and bias gradients into ``grads``; dx."""
        b = self.b
        x_t = b.transpose(x, f"{name}.input.T")
        grad_t = b.transpose(grad, f"{name}.output_grad.T")
        self.grads[name + ".weight"] = b.matmul_nt(x_t, grad_t, f"{name}.weight.grad")
        if bias:
            self.grads[name + ".bias"] = b.row_sum(grad_t, f"{name}.bias.grad")
        return b.matmul_nt(grad, b.state(name + ".weight"), f"{name}.input_grad")

    def norm(self, x: Ref, gain: str) -> tuple[Ref, Ref]:
        """``rms_norm_forward``: (n, y)."""
        b = self.b
        shape = b.shape(x)
        n = b.add("rms_norm", [x], shape, f"{gain}.normalized")
        return n, b.add("gain_mul", [n, b.state(gain)], shape, f"{gain}.forward")

    def norm_backward(self, x: Ref, n: Ref, grad: Ref, gain: str) -> Ref:
        """``rms_norm_backward`` one step an operator: the gain's gradient into ``grads``;
        dn = dy gain, c = mean(dn n) per row, t = dn 2^16 - n c, dx = t / r."""
        b = self.b
        shape = b.shape(x)
        grad_t = b.transpose(grad, f"{gain}.output_grad.T")
        n_t = b.transpose(n, f"{gain}.normalized.T")
        self.grads[gain] = b.add("rms_gain_grad", [grad_t, n_t], shape[-1:], f"{gain}.grad")
        dn = b.add("gain_mul", [grad, b.state(gain)], shape, f"{gain}.normalized_grad")
        c = b.add("rms_mean_dot", [dn, n], shape[:1], f"{gain}.mean_dot")
        t = b.add("rms_center", [dn, n, c], shape, f"{gain}.centered")
        return b.add("rms_norm_dx", [t, x], shape, f"{gain}.input_grad")

    def heads(self, rows: Ref, part: int, label: str, *, transposed: bool = False) -> Ref:
        """Part ``part`` (q 0, k 1, v 2) of token rows as (B, h, T, dh), or (B, h, dh, T)."""
        m = self.model
        t, dh = m.context, m.head_dim
        shape = (self.spec.batch_size, m.heads, *((dh, t) if transposed else (t, dh)))
        return self.b.add(
            "split_heads",
            [rows],
            shape,
            label,
            context=t,
            heads=m.heads,
            part=part,
            width=m.d_model,
            transposed=int(transposed),
        )

    def add(self, x: Ref, y: Ref, label: str) -> Ref:
        return self.b.add("residual_add", [x, y], self.b.shape(x), label)

    def block(self, layer: int, x: Ref) -> tuple[Ref, _Block]:
        """One block's forward: the stream after it, and what its backward reads."""
        m, b, p = self.model, self.b, f"block{layer}."
        n1, a = self.norm(x, p + "norm1.gain")
        qkv = self.linear(a, p + "attn.qkv")
        q = self.heads(qkv, 0, p + "attn.q")
        k = self.heads(qkv, 1, p + "attn.k")
        v = self.heads(qkv, 2, p + "attn.v")
        v_t = self.heads(qkv, 2, p + "attn.v.T", transposed=True)
        scale = attention_scale(m.head_dim)
        square = (self.spec.batch_size, m.heads, m.context, m.context)
        scores = b.add("attention_scores", [q, k], square, p + "attn.scores", scale=scale)
        probs = b.add("causal_softmax", [scores], square, p + "attn.softmax")
        heads_out = b.matmul_nt(probs, v_t, p + "attn.values")
        o = b.add("merge_heads", [heads_out], (self.rows, m.d_model), p + "attn.merge")
        x1 = self.add(x, self.linear(o, p + "attn.proj"), p + "attn.residual")
        n2, mid = self.norm(x1, p + "norm2.gain")
        u = self.linear(mid, p + "mlp.in")
        h = b.add("gelu", [u, b.state(p + "mlp.in.bias")], b.shape(u), p + "mlp.gelu")
        x2 = self.add(x1, self.linear(h, p + "mlp.out"), p + "mlp.residual")
        return x2, _Block(x, n1, a, qkv, q, k, v, probs, o, x1, n2, mid, u, h)

    def block_backward(self, layer: int, blk: _Block, gx: Ref) -> Ref:
        """One block's backward from the stream's gradient ``gx``: the gradient before it."""
        b, p = self.b, f"block{layer}."
        grad = self.linear_backward(blk.h, gx, p + "mlp.out")
        inputs = [blk.u, b.state(p + "mlp.in.bias"), grad]
        grad = b.add("gelu_backward", inputs, b.shape(blk.u), p + "mlp.gelu.grad")
        grad = self.linear_backward(blk.m, grad, p + "mlp.in")
        grad = self.norm_backward(blk.x1, blk.n2, grad, p + "norm2.gain")
        gx = self.add(gx, grad, p + "attn.residual.grad")
        grad = self.linear_backward(blk.o, gx, p + "attn.proj")
        grad_o = self.heads(grad, 0, p + "attn.values.grad")
        grad_o_t = self.heads(grad, 0, p + "attn.values.grad.T", transposed=True)
        grad_v = b.matmul_nt(b.transpose(blk.p, p + "attn.softmax.T"), grad_o_t, p + "attn.v.grad")
        grad_p = b.matmul_nt(grad_o, blk.v, p + "attn.softmax.grad")
        scale = attention_scale(self.model.head_dim)
        grad_s = b.add(
            "attention_softmax_backward",
            [blk.p, grad_p],
            b.shape(blk.p),
            p + "attn.scores.grad",
            scale=scale,
        )
        k_t = self.heads(blk.qkv, 1, p + "attn.k.T", transposed=True)
        grad_q = b.matmul_nt(grad_s, k_t, p + "attn.q.grad")
        q_t = self.heads(blk.qkv, 0, p + "attn.q.T", transposed=True)
        grad_s_t = b.transpose(grad_s, p + "attn.scores.grad.T")
        grad_k = b.matmul_nt(grad_s_t, q_t, p + "attn.k.grad")
        merged = b.add(
            "merge_heads", [grad_q, grad_k, grad_v], b.shape(blk.qkv), p + "attn.qkv.output_grad"
        )
        grad = self.linear_backward(blk.a, merged, p + "attn.qkv")
        grad = self.norm_backward(blk.x, blk.n1, grad, p + "norm1.gain")
        return self.add(gx, grad, p + "residual.grad")


def build(spec: JobSpec) -> Program:
    """The transformer's step: forward, the cross-entropy gradient over the B T tokens,
    backward, the optimizer."""
    model = spec.model
    if not isinstance(model, TransformerSpec):
        raise TypeError(f"not a transformer spec: {model.family}")
    b = Builder(spec)
    tf = _Transformer(spec, b)
    batch, t, d = spec.batch_size, model.context, model.d_model
    tokens = b.batch("inputs", (batch, t))
    targets = b.batch("targets", (batch, t))
    embed = [b.state("embed.token"), b.state("embed.position"), tokens]
    x = b.add("embed_tokens", embed, (tf.rows, d), "embed.forward")
    blocks = []
    for layer in range(model.layers):
        x, blk = tf.block(layer, x)
        blocks.append(blk)
    nf, xf = tf.norm(x, "norm.gain")
    logits = tf.linear(xf, "head", bias=False)
    target_rows = b.rearrange(targets, (tf.rows,), (0,), "loss.targets")
    grad = b.add("softmax_xent_grad", [logits, target_rows], b.shape(logits), "loss.grad")
    grad = tf.linear_backward(xf, grad, "head", bias=False)
    gx = tf.norm_backward(x, nf, grad, "norm.gain")
    for layer in reversed(range(model.layers)):
        gx = tf.block_backward(layer, blocks[layer], gx)
    gx_t = b.transpose(gx, "embed.output_grad.T")
    tf.grads["embed.token"] = b.add(
        "embedding_grad", [gx_t, tokens], (model.vocab, d), "embed.token.grad", rows=model.vocab
    )
    tf.grads["embed.position"] = b.add(
        "position_grad", [gx_t], (t, d), "embed.position.grad", context=t
    )
    return b.finish(tf.grads)

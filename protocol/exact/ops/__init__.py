"""The exact operator library: pure functions on fixed-point int64 tensors.

Each operator comes as ``<op>_forward`` (returning its output and what the backward needs),
``<op>_backward`` and a float64 ``<op>_reference``; its docstring states the math, where the
one rounding rule is applied, the bound that keeps every intermediate exact, and the tolerance
against the reference. Products go through the caller's ``ExactMatmul``, which refuses any
product that could leave the exact range (``OverflowBoundError``) before computing it.

    linear       x @ W + b                       (ops.linear)
    conv2d       stride, padding                 (ops.conv)
    max / avg pooling                            (ops.pool)
    relu, gelu                                   (ops.activations)
    rms norm     exact integer rsqrt             (ops.norm)
    causal self-attention, integer softmax       (ops.attention)
    embedding                                    (ops.embedding)
    cross-entropy over classes or a vocabulary   (ops.loss)
"""

"""Model families of the job spec: their fields, validation, parameters and cost, torch-free.

A family is a declarative architecture the exact VM knows how to train (``protocol.exact``
holds the arithmetic). This module says, from the spec alone, which fields a family has
(every one enters the spec hash, defaults included), which parameter tensors a model of it
has (names, shapes, order — the state layout builds on them), how many multiply-accumulates
and activation values an example costs (what the ledger bounds), and how many loss terms a
step averages over.

    mlp          input_dim -> hidden... -> classes, ReLU between layers
    cnn          image [C, H, W] -> (conv, ReLU, pool)... -> flatten -> dense head -> classes
    transformer  decoder-only, char-level: token + position embeddings, pre-norm blocks of
                 causal self-attention and a GELU MLP (RMS norm), final norm, linear head
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from protocol.errors import SpecError

MAX_WIDTH = 4096
MAX_LAYERS = 8
MAX_CONV_LAYERS = 6
MAX_KERNEL = 11
MAX_CHANNELS = 512
MAX_IMAGE_SIDE = 256
MAX_VOCAB = 4096
MAX_CONTEXT = 1024
ATTENTION_SCORE_VALUES = 4
"""Values per attention score a step holds and passes over: scores, probabilities and their
two gradients (the integer softmax and its backward are the costliest elementwise work)."""
MAX_STEP_ACTIVATIONS = 1 << 25
"""Values a step may hold at once (batch x ``activations_per_example``): 256 MiB of int64, so a
spec cannot make every verifier and the referee allocate without bound."""
POOL_TYPES = ("max", "avg")
FAMILIES = ("mlp", "cnn", "transformer")

Shapes = dict[str, tuple[int, ...]]


def _require_mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(field, f"must be a mapping, got {type(value).__name__}")
    return value


def _int(
    data: Mapping[str, Any], key: str, field: str, lo: int, hi: int, default: Any = None
) -> int:
    value = data.get(key, default)
    if value is None:
        raise SpecError(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(field, f"must be between {lo} and {hi}, got {value}")
    return value


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecError(f"{prefix}.{unknown[0]}", "unknown field")


def _int_list(data: Mapping[str, Any], key: str, field: str, most: int) -> tuple[int, ...]:
    raw = data.get(key, [])
    if not isinstance(raw, list) or len(raw) > most:
        raise SpecError(field, f"must be a list of at most {most} layer widths")
    return tuple(_int({"w": w}, "w", f"{field}[{i}]", 1, MAX_WIDTH) for i, w in enumerate(raw))


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def layer_param(prefix: str, layer: int, kind: str) -> str:
    """The name of a numbered layer's parameter: ``layer0.weight`` (mlp), ``conv1.bias`` and
    ``dense0.weight`` (cnn) — the one place these names are spelled."""
    return f"{prefix}{layer}.{kind}"


def _dense_shapes(prefix: str, sizes: list[int]) -> Shapes:
    shapes: Shapes = {}
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        shapes[layer_param(prefix, layer, "weight")] = (fan_in, fan_out)
        shapes[layer_param(prefix, layer, "bias")] = (fan_out,)
    return shapes


def _dense_macs(sizes: list[int]) -> int:
    """Multiply-accumulates of a dense stack per example, a bias add counted as one."""
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))


@dataclass(frozen=True)
class ModelSpec:
    """The MLP family: ``input_dim -> hidden... -> classes`` with ReLU between layers."""

    family: str
    input_dim: int
    hidden: tuple[int, ...]
    classes: int

    def layer_sizes(self) -> list[int]:
        return [self.input_dim, *self.hidden, self.classes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "input_dim": self.input_dim,
            "hidden": list(self.hidden),
            "classes": self.classes,
        }

    def param_shapes(self) -> Shapes:
        return _dense_shapes("layer", self.layer_sizes())

    def macs_per_example(self) -> int:
        return _dense_macs(self.layer_sizes())

    def activations_per_example(self) -> int:
        return sum(self.layer_sizes())

    @property
    def loss_terms_per_example(self) -> int:
        return 1

    @property
    def input_features(self) -> int:
        return self.input_dim


MlpSpec = ModelSpec


@dataclass(frozen=True)
class ConvLayer:
    """One convolution (``channels`` outputs, square ``kernel``), ReLU, then a ``pool`` x
    ``pool`` pooling with stride ``pool`` (1: none)."""

    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: int = 1
    pool_type: str = "max"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CnnSpec:
    """The CNN family: conv layers over an image ``[channels, height, width]``, then a dense
    head ``[flattened, *hidden, classes]``."""

    family: str
    image: tuple[int, int, int]
    conv: tuple[ConvLayer, ...]
    hidden: tuple[int, ...]
    classes: int

    def conv_output_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) after each conv layer's pooling."""
        channels, height, width = self.image
        shapes = []
        for layer in self.conv:
            height = (height + 2 * layer.padding - layer.kernel) // layer.stride + 1
            width = (width + 2 * layer.padding - layer.kernel) // layer.stride + 1
            height, width, channels = height // layer.pool, width // layer.pool, layer.channels
            shapes.append((channels, height, width))
        return shapes

    def flattened(self) -> int:
        channels, height, width = ([self.image, *self.conv_output_shapes()])[-1]
        return channels * height * width

    def head_sizes(self) -> list[int]:
        return [self.flattened(), *self.hidden, self.classes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "image": list(self.image),
            "conv": [layer.to_dict() for layer in self.conv],
            "hidden": list(self.hidden),
            "classes": self.classes,
        }

    def param_shapes(self) -> Shapes:
        shapes: Shapes = {}
        in_channels = self.image[0]
        for index, layer in enumerate(self.conv):
            shapes[layer_param("conv", index, "weight")] = (
                layer.channels,
                in_channels,
                layer.kernel,
                layer.kernel,
            )
            shapes[layer_param("conv", index, "bias")] = (layer.channels,)
            in_channels = layer.channels
        shapes.update(_dense_shapes("dense", self.head_sizes()))
        return shapes

    def macs_per_example(self) -> int:
        total = 0
        channels, height, width = self.image
        for layer in self.conv:
            out_h = (height + 2 * layer.padding - layer.kernel) // layer.stride + 1
            out_w = (width + 2 * layer.padding - layer.kernel) // layer.stride + 1
            total += out_h * out_w * layer.channels * channels * layer.kernel * layer.kernel
            channels, height, width = layer.channels, out_h // layer.pool, out_w // layer.pool
        return total + _dense_macs(self.head_sizes())

    def activations_per_example(self) -> int:
        """The unfolded patches (im2col) and outputs of every conv layer, and the head's."""
        total = 0
        channels, height, width = self.image
        for layer in self.conv:
            out_h = (height + 2 * layer.padding - layer.kernel) // layer.stride + 1
            out_w = (width + 2 * layer.padding - layer.kernel) // layer.stride + 1
            patches = out_h * out_w * channels * layer.kernel * layer.kernel
            total += patches + out_h * out_w * layer.channels
            channels, height, width = layer.channels, out_h // layer.pool, out_w // layer.pool
        return total + sum(self.head_sizes())

    @property
    def loss_terms_per_example(self) -> int:
        return 1

    @property
    def input_features(self) -> int:
        channels, height, width = self.image
        return channels * height * width


@dataclass(frozen=True)
class TransformerSpec:
    """The decoder-only transformer family over a character vocabulary."""

    family: str
    vocab: int
    context: int
    d_model: int
    heads: int
    layers: int
    ff: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def param_shapes(self) -> Shapes:
        d, ff = self.d_model, self.ff
        shapes: Shapes = {"embed.token": (self.vocab, d), "embed.position": (self.context, d)}
        for block in range(self.layers):
            p = f"block{block}."
            shapes[p + "norm1.gain"] = (d,)
            shapes[p + "attn.qkv.weight"] = (d, 3 * d)
            shapes[p + "attn.qkv.bias"] = (3 * d,)
            shapes[p + "attn.proj.weight"] = (d, d)
            shapes[p + "attn.proj.bias"] = (d,)
            shapes[p + "norm2.gain"] = (d,)
            shapes[p + "mlp.in.weight"] = (d, ff)
            shapes[p + "mlp.in.bias"] = (ff,)
            shapes[p + "mlp.out.weight"] = (ff, d)
            shapes[p + "mlp.out.bias"] = (d,)
        shapes["norm.gain"] = (d,)
        shapes["head.weight"] = (d, self.vocab)
        return shapes

    def macs_per_example(self) -> int:
        """One sequence of ``context`` tokens: the dense products per token, plus attention's
        two T x T x d products per layer (the causal half counted whole: it is computed)."""
        d, t = self.d_model, self.context
        per_token = self.layers * (4 * d * d + 2 * d * self.ff) + d * self.vocab
        return t * per_token + self.layers * 2 * t * t * d

    def activations_per_example(self) -> int:
        """Per layer: the residual stream, normalized inputs, q, k, v and the MLP's hidden
        values per token (counted twice: GELU's forward and backward are the costliest
        elementwise work per value), the heads' T x T scores, probabilities and their
        gradients; then the logits."""
        d, t = self.d_model, self.context
        per_layer = t * (8 * d + 4 * self.ff) + ATTENTION_SCORE_VALUES * self.heads * t * t
        return self.layers * per_layer + t * (d + self.vocab)

    @property
    def loss_terms_per_example(self) -> int:
        return self.context


AnyModelSpec = ModelSpec | CnnSpec | TransformerSpec


def _parse_mlp(data: Mapping[str, Any]) -> ModelSpec:
    _reject_unknown(data, {"family", "input_dim", "hidden", "classes"}, "model")
    input_dim = _int(data, "input_dim", "model.input_dim", 1, MAX_WIDTH)
    hidden = _int_list(data, "hidden", "model.hidden", MAX_LAYERS)
    classes = _int(data, "classes", "model.classes", 2, MAX_WIDTH)
    return ModelSpec("mlp", input_dim, hidden, classes)


def _parse_conv_layer(raw: Any, field: str) -> ConvLayer:
    data = _require_mapping(raw, field)
    _reject_unknown(data, {"channels", "kernel", "stride", "padding", "pool", "pool_type"}, field)
    kernel = _int(data, "kernel", f"{field}.kernel", 1, MAX_KERNEL)
    pool_type = data.get("pool_type", "max")
    if pool_type not in POOL_TYPES:
        raise SpecError(f"{field}.pool_type", f"must be one of {POOL_TYPES}, got {pool_type!r}")
    return ConvLayer(
        channels=_int(data, "channels", f"{field}.channels", 1, MAX_CHANNELS),
        kernel=kernel,
        stride=_int(data, "stride", f"{field}.stride", 1, 4, default=1),
        padding=_int(data, "padding", f"{field}.padding", 0, kernel - 1, default=0),
        pool=_int(data, "pool", f"{field}.pool", 1, 4, default=1),
        pool_type=pool_type,
    )


def _parse_cnn(data: Mapping[str, Any]) -> CnnSpec:
    _reject_unknown(data, {"family", "image", "conv", "hidden", "classes"}, "model")
    image_raw = data.get("image")
    if not isinstance(image_raw, list) or len(image_raw) != 3:
        raise SpecError("model.image", "must be [channels, height, width]")
    image = (
        _int({"v": image_raw[0]}, "v", "model.image[0]", 1, MAX_CHANNELS),
        _int({"v": image_raw[1]}, "v", "model.image[1]", 1, MAX_IMAGE_SIDE),
        _int({"v": image_raw[2]}, "v", "model.image[2]", 1, MAX_IMAGE_SIDE),
    )
    conv_raw = data.get("conv")
    if not isinstance(conv_raw, list) or not 1 <= len(conv_raw) <= MAX_CONV_LAYERS:
        raise SpecError("model.conv", f"must be a list of 1 to {MAX_CONV_LAYERS} conv layers")
    conv = tuple(_parse_conv_layer(raw, f"model.conv[{i}]") for i, raw in enumerate(conv_raw))
    hidden = _int_list(data, "hidden", "model.hidden", MAX_LAYERS)
    classes = _int(data, "classes", "model.classes", 2, MAX_WIDTH)
    spec = CnnSpec("cnn", image, conv, hidden, classes)
    # Every layer must leave at least one pixel: a shape that vanishes has nothing to train.
    for index, (_, height, width) in enumerate(spec.conv_output_shapes()):
        if height < 1 or width < 1:
            raise SpecError(f"model.conv[{index}]", "leaves no pixels (kernel, stride or pool)")
    if spec.flattened() > MAX_WIDTH * 16:
        raise SpecError("model.conv", f"flattens to {spec.flattened()} > {MAX_WIDTH * 16} values")
    return spec


def _parse_transformer(data: Mapping[str, Any]) -> TransformerSpec:
    _reject_unknown(
        data, {"family", "vocab", "context", "d_model", "heads", "layers", "ff"}, "model"
    )
    vocab = _int(data, "vocab", "model.vocab", 2, MAX_VOCAB)
    context = _int(data, "context", "model.context", 2, MAX_CONTEXT)
    if not is_power_of_two(context):
        # The mean over B x T tokens is a shift only when both are powers of two.
        raise SpecError("model.context", f"must be a power of two (exact averaging), got {context}")
    d_model = _int(data, "d_model", "model.d_model", 2, MAX_WIDTH)
    heads = _int(data, "heads", "model.heads", 1, 64)
    if d_model % heads:
        raise SpecError("model.heads", f"must divide d_model ({d_model}), got {heads}")
    layers = _int(data, "layers", "model.layers", 1, MAX_LAYERS)
    ff = _int(data, "ff", "model.ff", 1, 4 * MAX_WIDTH, default=4 * d_model)
    return TransformerSpec("transformer", vocab, context, d_model, heads, layers, ff)


_PARSERS: dict[str, Callable[[Mapping[str, Any]], AnyModelSpec]] = {
    "mlp": _parse_mlp,
    "cnn": _parse_cnn,
    "transformer": _parse_transformer,
}


def parse_model(data: Any) -> AnyModelSpec:
    """Validate ``model:`` into the family's spec; SpecError names the first bad field."""
    data = _require_mapping(data, "model")
    family = data.get("family")
    if not isinstance(family, str) or not family:
        raise SpecError("model.family", f"must be a non-empty string, got {family!r}")
    if family not in _PARSERS:
        supported = ", ".join(repr(f) for f in FAMILIES)
        raise SpecError("model.family", f"unsupported family {family!r} (supported: {supported})")
    return _PARSERS[family](data)


def parameter_count(model: AnyModelSpec) -> int:
    """Trainable numbers of the model."""
    total = 0
    for shape in model.param_shapes().values():
        count = 1
        for dim in shape:
            count *= dim
        total += count
    return total

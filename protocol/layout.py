"""The layout of a training state: its tensors' names, dtypes and shapes, from the spec alone.

Pure and torch-free, so the ledger can bound blobs without importing the exact VM. The exact VM
(``protocol.exact``) builds its states from these names and shapes, and decodes blobs against
them, so this module is the one place that says what a state of a spec is:

    <parameter>                the family's parameters (``protocol.models``), in its order:
                               mlp ``layer{l}.weight`` (fan_in, fan_out) and ``layer{l}.bias``;
                               cnn ``conv{l}.*`` then ``dense{l}.*``; transformer ``embed.*``,
                               ``block{l}.*``, ``norm.gain``, ``head.weight``
    momentum.<parameter>       the shape of its parameter (sgd: momentum buffer)
    adam_m.<parameter>         the shape of its parameter (adamw: first moment, Q16)
    adam_v.<parameter>         the shape of its parameter (adamw: second moment, Q20)
    step                       ()                  the step counter

Every tensor is int64 (Q16 fixed point).
"""

from __future__ import annotations

from protocol.hashing import TensorLayout, encoded_size
from protocol.models import layer_param
from protocol.models import parameter_count as model_parameter_count
from protocol.spec import JobSpec

STEP_KEY = "step"
STATE_DTYPE = "int64"


def weight_name(layer: int) -> str:
    """The MLP's weight of ``layer``."""
    return layer_param("layer", layer, "weight")


def bias_name(layer: int) -> str:
    """The MLP's bias of ``layer``."""
    return layer_param("layer", layer, "bias")


def momentum_name(param: str) -> str:
    return f"momentum.{param}"


def adam_m_name(param: str) -> str:
    return f"adam_m.{param}"


def adam_v_name(param: str) -> str:
    return f"adam_v.{param}"


def optimizer_buffer_names(spec: JobSpec, param: str) -> list[str]:
    """The optimizer-state tensors of one parameter, in layout order."""
    if spec.optimizer.name == "adamw":
        return [adam_m_name(param), adam_v_name(param)]
    return [momentum_name(param)]


def param_names(spec: JobSpec) -> list[str]:
    return list(spec.model.param_shapes())


def expected_shapes(spec: JobSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a state of ``spec``."""
    shapes: dict[str, tuple[int, ...]] = {STEP_KEY: ()}
    for name, shape in spec.model.param_shapes().items():
        shapes[name] = shape
        for buffer in optimizer_buffer_names(spec, name):
            shapes[buffer] = shape
    return shapes


def state_layout(spec: JobSpec) -> dict[str, TensorLayout]:
    """Name -> dtype and shape of every tensor of a state of ``spec``."""
    return {name: TensorLayout(STATE_DTYPE, shape) for name, shape in expected_shapes(spec).items()}


def state_blob_size(spec: JobSpec) -> int:
    """The exact length in bytes of every state blob of ``spec`` (all steps alike).

    What a fetch of a checkpoint, a pre-state or the final model may read at most, and what the
    chain's blob-size limit must admit for the job to be trainable.
    """
    return encoded_size(state_layout(spec))


def parameter_count(spec: JobSpec) -> int:
    """Trainable numbers of the model."""
    return model_parameter_count(spec.model)


STEP_BASE_WORK = 1 << 23
"""Work of a step whatever its size: batch sampling, the range check, dispatch (~0.5 ms)."""
TENSOR_WORK = 1 << 21
"""Work per parameter tensor and step: its operators, its gradient, its optimizer update."""
ACTIVATION_WORK = 512
"""Work per activation value and step: the int64 elementwise passes (requantization, ReLU or
GELU, norms, softmax, pooling, im2col and their backward) cost about as much as 512 exact
multiply-accumulates inside a float64 GEMM."""


def step_work(spec: JobSpec) -> int:
    """An upper estimate of one exact step's cost, in work units: one unit is one exact
    multiply-accumulate inside a float64 GEMM (about 0.06 ns on one core of the development
    machine). Per example, each product of the forward pass counts once and twice backward (the
    weight's gradient and the one passed on); every activation value counts its elementwise
    passes; every step and parameter tensor its fixed cost. ``python bench/bench_cost.py``
    measures the units against time for every family, including specs built to be slow for
    their size (red team: a tiny model with a long segment, pooling, long contexts)."""
    model = spec.model
    per_example = 3 * model.macs_per_example() + ACTIVATION_WORK * model.activations_per_example()
    tensors = len(model.param_shapes())
    return STEP_BASE_WORK + TENSOR_WORK * tensors + spec.batch_size * per_example


def segment_work(spec: JobSpec) -> int:
    """Work to re-execute one segment (``step_work`` per step): what a verifier's sample and a
    dispute move must fit in (``max_verification_work``, ``max_segment_work``)."""
    return spec.checkpoint_interval * step_work(spec)

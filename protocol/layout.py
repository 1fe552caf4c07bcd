"""The layout of a training state: its tensors' names, dtypes and shapes, from the spec alone.

Pure and torch-free, so the ledger can bound blobs without importing the exact VM. The exact VM
(``protocol.exact``) builds its states from these names and shapes, and decodes blobs against
them, so this module is the one place that says what a state of a spec is:

    layer{l}.weight            (fan_in, fan_out)   for each layer l of ``spec.model.layer_sizes()``
    layer{l}.bias              (fan_out,)
    momentum.<parameter>       the shape of its parameter (sgd: momentum buffer)
    adam_m.<parameter>         the shape of its parameter (adamw: first moment, Q16)
    adam_v.<parameter>         the shape of its parameter (adamw: second moment, Q20)
    step                       ()                  the step counter

Every tensor is int64 (Q16 fixed point).
"""

from __future__ import annotations

import itertools

from protocol.errors import SpecError
from protocol.hashing import TensorLayout, encoded_size
from protocol.spec import JobSpec

STEP_KEY = "step"
STATE_DTYPE = "int64"


def weight_name(layer: int) -> str:
    return f"layer{layer}.weight"


def bias_name(layer: int) -> str:
    return f"layer{layer}.bias"


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
    names = []
    for layer in range(len(spec.model.layer_sizes()) - 1):
        names += [weight_name(layer), bias_name(layer)]
    return names


def expected_shapes(spec: JobSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a state of ``spec``."""
    if spec.model.family != "mlp":
        raise SpecError("model.family", f"no state layout for family {spec.model.family!r}")
    shapes: dict[str, tuple[int, ...]] = {STEP_KEY: ()}
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(spec.model.layer_sizes())):
        for name, shape in (
            (weight_name(layer), (fan_in, fan_out)),
            (bias_name(layer), (fan_out,)),
        ):
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
    """Trainable numbers of the model (weights and biases)."""
    shapes = expected_shapes(spec)
    total = 0
    for name in param_names(spec):
        count = 1
        for dim in shapes[name]:
            count *= dim
        total += count
    return total


def segment_work(spec: JobSpec) -> int:
    """Multiply-accumulates to re-execute one segment: per step, each weight is used once per
    example forward and twice backward (its gradient and the gradient it passes on)."""
    return spec.checkpoint_interval * spec.batch_size * 3 * parameter_count(spec)

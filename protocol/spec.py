"""The job spec: a declarative, versioned description of a training program.

No user code runs on solvers: a job is fully described by this spec, and ``spec_hash`` pins it.
The spec covers *what is trained*; the economic terms of a job (payment, stake, sample count,
deadlines) travel beside it in the ledger's ``post_job`` transaction.

Glossary
    step        one update; steps are numbered 0..N-1, state i is the state *before* step i.
    checkpoint  the state at a step that is a multiple of the checkpoint interval C.
    leaf        the hash of a checkpoint; leaves are the states at 0, C, 2C, ..., N.
    segment     the C steps between leaf j and leaf j+1 (segments 0..N/C-1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.errors import SpecError
from protocol.hashing import hash_json
from protocol.models import MAX_STEP_ACTIVATIONS, AnyModelSpec, parse_model
from protocol.models import ModelSpec as ModelSpec  # the MLP family's spec, re-exported
from protocol.types import Hash32

SPEC_VERSION = 1
MAX_STEPS = 10_000_000
MAX_BATCH = 4096
MOMENTUM_FRAC_BITS = 16
OPTIMIZERS = ("sgd", "adamw")
_SPEC_KEYS = {
    "version",
    "model",
    "dataset",
    "seed",
    "steps",
    "batch_size",
    "optimizer",
    "checkpoint_interval",
}
_IGNORED_KEYS = {"name", "description", "terms"}


@dataclass(frozen=True)
class DatasetRef:
    id: str
    hash: str  # hex SHA-256 of the dataset's canonical bytes


@dataclass(frozen=True)
class OptimizerSpec:
    """``sgd`` (momentum) or ``adamw``. Every number is one the exact VM applies exactly:
    the learning rate, AdamW's epsilon and weight decay are powers of two (shifts), the betas
    and the momentum are applied as Q16 integers (``*_q16``)."""

    name: str
    lr_log2: int  # learning rate = 2 ** lr_log2, so the update is an exact shift
    momentum: float = 0.0  # sgd: applied as the fixed-point integer momentum_q16
    beta1: float = 0.9  # adamw: applied as beta1_q16
    beta2: float = 0.999  # adamw: applied as beta2_q16
    eps_log2: int = -12  # adamw: epsilon = 2 ** eps_log2
    weight_decay_log2: int | None = None  # adamw: decoupled decay 2 ** weight_decay_log2, or none

    @property
    def momentum_q16(self) -> int:
        return round(self.momentum * (1 << MOMENTUM_FRAC_BITS))

    @property
    def beta1_q16(self) -> int:
        return round(self.beta1 * (1 << MOMENTUM_FRAC_BITS))

    @property
    def beta2_q16(self) -> int:
        return round(self.beta2 * (1 << MOMENTUM_FRAC_BITS))

    def to_dict(self) -> dict[str, Any]:
        if self.name == "adamw":
            return {
                "name": self.name,
                "lr_log2": self.lr_log2,
                "beta1": self.beta1,
                "beta2": self.beta2,
                "eps_log2": self.eps_log2,
                "weight_decay_log2": self.weight_decay_log2,
            }
        return {"name": self.name, "lr_log2": self.lr_log2, "momentum": self.momentum}


@dataclass(frozen=True)
class JobSpec:
    version: int
    model: AnyModelSpec
    dataset: DatasetRef
    seed: int
    steps: int
    batch_size: int
    optimizer: OptimizerSpec
    checkpoint_interval: int

    @property
    def num_segments(self) -> int:
        return self.steps // self.checkpoint_interval

    @property
    def num_leaves(self) -> int:
        return self.num_segments + 1

    @property
    def loss_terms(self) -> int:
        """Loss terms a step sums (and the optimizer averages by a shift): B examples, or
        B x T tokens for a language model. A power of two, so the mean is exact."""
        return self.batch_size * self.model.loss_terms_per_example

    @property
    def loss_terms_log2(self) -> int:
        return self.loss_terms.bit_length() - 1

    def leaf_step(self, leaf: int) -> int:
        """The step number whose (pre-)state leaf ``leaf`` commits to."""
        return leaf * self.checkpoint_interval

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model": self.model.to_dict(),
            "dataset": {"id": self.dataset.id, "hash": self.dataset.hash},
            "seed": self.seed,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer.to_dict(),
            "checkpoint_interval": self.checkpoint_interval,
        }


def spec_hash(spec: JobSpec) -> Hash32:
    """SHA-256 of the spec's canonical JSON."""
    return hash_json(spec.to_dict())


def _require_mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(field, f"must be a mapping, got {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], key: str, field: str, lo: int, hi: int) -> int:
    if key not in data:
        raise SpecError(field, "is required")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(field, f"must be between {lo} and {hi}, got {value}")
    return value


def _str(data: Mapping[str, Any], key: str, field: str) -> str:
    if key not in data:
        raise SpecError(field, "is required")
    value = data[key]
    if not isinstance(value, str) or not value:
        raise SpecError(field, f"must be a non-empty string, got {value!r}")
    return value


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise SpecError(where, "unknown field")


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _fraction(data: Mapping[str, Any], key: str, default: float, field: str) -> float:
    """A number in [0, 1) whose Q16 integer is below 1.0 (so 1 - it is at least 2^-16).

    The Q16 integer is Python's ``round(value * 2^16)`` of the float64 value: round half to
    even (docs/protocol.md, "Numbers in the spec")."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, f"must be a number, got {value!r}")
    if not 0.0 <= float(value) < 1.0 or round(float(value) * (1 << MOMENTUM_FRAC_BITS)) >= (
        1 << MOMENTUM_FRAC_BITS
    ):
        raise SpecError(field, f"must be in [0, 1 - 2^-16], got {value}")
    return float(value)


def parse_optimizer(data: Any) -> OptimizerSpec:
    data = _require_mapping(data, "optimizer")
    name = _str(data, "name", "optimizer.name")
    if name not in OPTIMIZERS:
        raise SpecError(
            "optimizer.name", f"unsupported optimizer {name!r} (supported: 'sgd', 'adamw')"
        )
    if name == "adamw":
        _reject_unknown(
            data,
            {"name", "lr_log2", "beta1", "beta2", "eps_log2", "weight_decay_log2"},
            "optimizer",
        )
        lr_log2 = _int(data, "lr_log2", "optimizer.lr_log2", -16, 0)
        beta1 = _fraction(data, "beta1", 0.9, "optimizer.beta1")
        beta2 = _fraction(data, "beta2", 0.999, "optimizer.beta2")
        eps_log2 = _int({"e": data.get("eps_log2", -12)}, "e", "optimizer.eps_log2", -20, 0)
        decay = data.get("weight_decay_log2")
        if decay is not None:
            decay = _int(data, "weight_decay_log2", "optimizer.weight_decay_log2", -16, 0)
        return OptimizerSpec(name, lr_log2, 0.0, beta1, beta2, eps_log2, decay)
    _reject_unknown(data, {"name", "lr_log2", "momentum"}, "optimizer")
    lr_log2 = _int(data, "lr_log2", "optimizer.lr_log2", -16, 0)
    momentum = _fraction(data, "momentum", 0.0, "optimizer.momentum")
    return OptimizerSpec(name, lr_log2, momentum)


def parse_spec(data: Any) -> JobSpec:
    """Validate a mapping (parsed YAML/JSON) into a JobSpec.

    Raises SpecError naming the first offending field. Top-level ``name``, ``description`` and
    ``terms`` are accepted and ignored here (``terms`` belongs to the ledger's job order).
    """
    data = _require_mapping(data, "spec")
    _reject_unknown(data, _SPEC_KEYS | _IGNORED_KEYS, "")
    version = _int(data, "version", "version", 1, 1_000)
    if version != SPEC_VERSION:
        raise SpecError("version", f"unsupported spec version {version} (supported: 1)")
    model = parse_model(data.get("model"))
    ds = _require_mapping(data.get("dataset"), "dataset")
    _reject_unknown(ds, {"id", "hash"}, "dataset")
    dataset = DatasetRef(_str(ds, "id", "dataset.id"), _str(ds, "hash", "dataset.hash").lower())
    if len(dataset.hash) != 64 or any(c not in "0123456789abcdef" for c in dataset.hash):
        raise SpecError("dataset.hash", "must be 64 hex digits (SHA-256)")
    seed = _int(data, "seed", "seed", 0, 2**63 - 1)
    steps = _int(data, "steps", "steps", 1, MAX_STEPS)
    batch_size = _int(data, "batch_size", "batch_size", 1, MAX_BATCH)
    if not _is_power_of_two(batch_size):
        raise SpecError("batch_size", f"must be a power of two (exact averaging), got {batch_size}")
    activations = batch_size * model.activations_per_example()
    if activations > MAX_STEP_ACTIVATIONS:
        raise SpecError(
            "batch_size",
            f"a step would hold {activations:,} activations (at most {MAX_STEP_ACTIVATIONS:,}):"
            " lower the batch or the model's size",
        )
    optimizer = parse_optimizer(data.get("optimizer"))
    interval = _int(data, "checkpoint_interval", "checkpoint_interval", 1, MAX_STEPS)
    if steps % interval != 0:
        raise SpecError("checkpoint_interval", f"must divide steps ({steps}), got {interval}")
    return JobSpec(version, model, dataset, seed, steps, batch_size, optimizer, interval)


def with_steps(spec: JobSpec, steps: int) -> JobSpec:
    """A copy of ``spec`` that trains ``steps`` steps (re-validated)."""
    data = spec.to_dict()
    data["steps"] = steps
    return parse_spec(data)

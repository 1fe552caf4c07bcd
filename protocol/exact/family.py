"""What a model family of the exact VM provides, and the registry from spec to family.

A family (``mlp``, ``cnn``, ``transformer``) turns a spec's model into three things the
training program needs: its initial parameters, step i's batch, and the exact gradients of
the loss summed over the batch's loss terms (as ``row_sums``: the exact sums over the batch's
rows before their one rounding, so a batch split across workers sums its shares exactly,
``protocol.exact.shard``). The optimizer (``protocol.exact.optim``) and the
step (``protocol.exact.program``) are shared, so every family gets SGD and AdamW, the overflow
rule and the state layout the same way. The native float32 side (an idiomatic ``nn.Module``)
is the family's too: it is the baseline exact training is measured against.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch

from protocol.errors import SpecError
from protocol.exact.fixedpoint import ExactMatmul, Operand, rshift_round_
from protocol.spec import JobSpec

Params = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Batch:
    """Step i's examples: Q16 features (or token ids) and their targets (class or token ids)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    # The inputs already carried for ExactMatmul, bounded by the whole dataset's max |value|
    # (one conversion and one reduction per dataset instead of per step), when the family
    # multiplies its inputs directly.
    inputs_operand: Operand | None = None

    @property
    def examples(self) -> int:
        return int(self.targets.shape[0])

    def rows(self, start: int, stop: int) -> Batch:
        """Examples ``start``..``stop-1`` (views); the carried operand keeps its bound (the
        whole dataset's max, the same on every share)."""
        operand = self.inputs_operand
        if operand is not None:
            operand = Operand(operand.t64[start:stop], operand.maxabs)
        return Batch(self.inputs[start:stop], self.targets[start:stop], operand)


class RowSum(NamedTuple):
    """A parameter's gradient before its last rounding: ``total`` is the exact int64 sum over
    the batch's rows of the per-row terms, and the gradient is rshift_round(total, shift)
    (shift 0: a plain sum, e.g. a bias). Integer sums do not depend on order or grouping, so
    the totals of disjoint shares of the batch add up to the whole batch's total."""

    total: torch.Tensor
    shift: int


def rounded(sums: Mapping[str, RowSum]) -> dict[str, torch.Tensor]:
    """The gradients: each total rounded once by its shift (in place: the totals are fresh)."""
    return {name: rshift_round_(s.total, s.shift) for name, s in sums.items()}


class Family(Protocol):
    name: str
    metric: str  # what ``evaluate`` returns: "test accuracy" or "validation loss"

    def init_params(self, spec: JobSpec, device: torch.device) -> dict[str, torch.Tensor]:
        """Parameters of state 0 (int64 Q16), named and shaped as ``spec.model.param_shapes()``."""
        ...

    def batch(self, spec: JobSpec, i: int, device: torch.device) -> Batch:
        """Step i's batch, from the counter-based hash of (seed, i)."""
        ...

    def gradients(
        self, spec: JobSpec, params: Params, batch: Batch, matmul: ExactMatmul
    ) -> dict[str, torch.Tensor]:
        """Exact Q16 gradients of the loss summed over the batch's loss terms; raises
        OverflowBoundError before any inexact product or wrapping operation.
        (``rounded(row_sums(...))``.)"""
        ...

    def row_sums(
        self, spec: JobSpec, params: Params, batch: Batch, matmul: ExactMatmul
    ) -> dict[str, RowSum]:
        """The gradients as exact row sums before their last rounding (``RowSum``), in
        ``spec.model.param_shapes()`` order; the same bounds as ``gradients``."""
        ...

    def evaluate(self, spec: JobSpec, params: Params) -> float:
        """The headline metric on the dataset's held-out split (reported, never committed)."""
        ...

    def native_module(self, spec: JobSpec, params: Params) -> torch.nn.Module:
        """An idiomatic float32 ``nn.Module`` holding the same (dequantized) parameters."""
        ...

    def native_parameters(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The module's parameters under the exact state's names."""
        ...

    def native_loss(self, spec: JobSpec, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Mean loss of a batch, float32, with autograd."""
        ...

    def native_evaluate(self, spec: JobSpec, module: torch.nn.Module) -> float:
        """``evaluate``'s metric for the float32 module."""
        ...


_MODULES = {
    "mlp": "protocol.exact.mlp",
    "cnn": "protocol.exact.cnn",
    "transformer": "protocol.exact.transformer",
}


def family_of(spec: JobSpec) -> Family:
    """The family that trains ``spec`` (imported on first use)."""
    module = _MODULES.get(spec.model.family)
    if module is None:
        raise SpecError("model.family", f"the exact VM has no family {spec.model.family!r}")
    family: Family = importlib.import_module(module).FAMILY
    return family

"""The operator registry: what each ``OpNode.kind`` of a step's program computes.

An operator definition (``OpDef``) gives three views of one computation:

* ``run``: the whole output from the whole inputs — what a solver executes, and what the
  trace's entries hash;
* ``reads``: for one output element, the box (one half-open range per dimension) of each
  input that element depends on — what a referee must be shown, with chunk proofs;
* ``element``: that one output element from those boxes alone — what a referee recomputes,
  at a cost of the box sizes (one dot product, one row, one window, one value), never a
  whole tensor.

``element`` equals ``run``'s value at the same index whenever ``run`` does not overflow:
both perform the same exact integer arithmetic (products are exact, sums do not depend on
order), the one on all rows, the other on the rows the element needs.

Definitions register themselves by ``kind`` on import (``register``); ``op_def`` finds one
(importing every operator module, ``OP_MODULES``, on a kind not yet seen).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from protocol.errors import SpecError
from protocol.exact.bounds import BoundCheck
from protocol.exact.fixedpoint import maxabs
from protocol.trace import OpNode

Box = tuple[tuple[int, int], ...]
"""One half-open (lo, hi) range per dimension of an input."""


class OpDef(Protocol):
    kind: str

    def run(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The whole output: int64, shape node.shape, on the inputs' device. Raises
        OverflowBoundError when one of its run-time checks fails (and only then)."""
        ...

    def reads(
        self, node: OpNode, shapes: Sequence[tuple[int, ...]], index: tuple[int, ...]
    ) -> tuple[Box | None, ...]:
        """For output element ``index``: the box of each input it depends on (None: that
        input is not read). Boxes are contiguous in row-major order where the arithmetic
        allows (whole trailing dimensions: a row), so a referee proves them with few 4 KiB
        chunks."""
        ...

    def element(
        self, node: OpNode, index: tuple[int, ...], pieces: Sequence[torch.Tensor | None]
    ) -> int:
        """Output element ``index`` from the boxes' values only (piece j = input j cut to
        its box, CPU int64; None where ``reads`` gave None). Equals run(...)[index] whenever
        run does not overflow."""
        ...


@dataclass(frozen=True)
class Check:
    """One run-time check of an operator, as metadata: the product of its factors times
    ``scale`` must stay below ``limit``. Each factor is the max |value| of one input
    (``sources[f]`` its index) or a constant (``sources[f]`` None, the value the next of
    ``constants``). A failing check is proved by one element of each source input: any
    element's |value| is at most its input's max, so elements whose product already reaches
    the limit show the check fails (the next stage's witness)."""

    where: str
    what: str
    sources: tuple[int | None, ...]
    constants: tuple[int, ...]
    scale: int
    limit: int
    in_float: bool  # the product formed in float64, left to right (as ``BoundCheck``)

    def bound(self, inputs: Sequence[torch.Tensor]) -> BoundCheck:
        """The check on whole inputs, with the factors the operator's ``run`` multiplies."""
        constants = iter(self.constants)
        values = [next(constants) if j is None else maxabs(inputs[j]) for j in self.sources]
        factors = tuple(float(v) for v in values) if self.in_float else tuple(values)
        limit_text = f"2^{self.limit.bit_length() - 1}"
        limit = float(self.limit) if self.in_float else self.limit
        return BoundCheck(
            self.where, self.what, limit_text, factors, self.scale, limit, self.in_float
        )


@runtime_checkable
class CheckedOp(Protocol):
    """An operator that states its run-time checks (``Check``): ``run`` raises
    OverflowBoundError exactly when one of them fails on its inputs."""

    def checks(self, node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]: ...


def op_checks(node: OpNode, inputs: Sequence[torch.Tensor]) -> tuple[Check, ...]:
    """``node``'s checks (none for an operator that makes none or does not say)."""
    op = op_def(node.kind)
    return op.checks(node, inputs) if isinstance(op, CheckedOp) else ()


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add ``op`` to ``OPS`` under its kind (once: a second definition is a bug)."""
    if op.kind in OPS:
        raise ValueError(f"operator kind {op.kind!r} is registered twice")
    OPS[op.kind] = op
    return op


OP_MODULES = (
    "protocol.exact.trace.ops",
    "protocol.exact.trace.conv_ops",
    "protocol.exact.trace.transformer_ops",
)
"""The modules that register operators: ``op_def`` imports them all on a kind it has not
seen, so a referee finds any kind without building a program first."""


def _load_all() -> None:
    for module in OP_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as missing:
            if missing.name != module:
                raise


def op_def(kind: str) -> OpDef:
    """The definition of ``kind``; SpecError for a kind no module registers."""
    if kind not in OPS:
        _load_all()
    op = OPS.get(kind)
    if op is None:
        raise SpecError("trace.kind", f"no operator kind {kind!r}")
    return op


def int_attr(node: OpNode, name: str) -> int:
    """An integer attribute of ``node`` (a str there is a malformed program)."""
    value = node.attr(name)
    if not isinstance(value, int):
        raise SpecError("trace.attrs", f"operator {node.index}: {name} is not an integer")
    return value


def str_attr(node: OpNode, name: str) -> str:
    """A string attribute of ``node``."""
    value = node.attr(name)
    if not isinstance(value, str):
        raise SpecError("trace.attrs", f"operator {node.index}: {name} is not a string")
    return value


def cut(tensor: torch.Tensor, box: Box) -> torch.Tensor:
    """``tensor`` cut to ``box`` (a view): how a piece is made from a whole input."""
    return tensor[tuple(slice(lo, hi) for lo, hi in box)]


def whole(shape: Sequence[int]) -> Box:
    """The box of a whole tensor of ``shape``."""
    return tuple((0, dim) for dim in shape)


def row_box(shape: Sequence[int], lead: Sequence[int]) -> Box:
    """The box of one row: the leading indices ``lead`` fixed, every trailing dimension
    whole (contiguous in row-major order)."""
    fixed = tuple((i, i + 1) for i in lead)
    return fixed + tuple((0, dim) for dim in shape[len(lead) :])


def point_box(index: Sequence[int]) -> Box:
    """The box of one element."""
    return tuple((i, i + 1) for i in index)

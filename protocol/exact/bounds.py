"""The exact VM's run-time bound checks, and their record when a step's batch is split.

Every run-time check of a step (``ExactMatmul``'s max|a| max|b| K < 2^53, ``check_sum_bound``,
``require_below`` and the operators' own) has one shape: a product of maxima over the step's
tensors, times a constant, must stay below a limit. One process evaluates it and raises
``OverflowBoundError`` (the overflow rule then skips the step, ``program.step``).

When the batch is split across workers (``protocol.exact.shard``), a worker sees only its own
rows: its maxima are at most the whole batch's, and a row count (a product's inner dimension
over the batch, a sum's number of terms) is only its share. A worker therefore checks with the
*whole batch's* row count (``batch_rows``) — so a failure on its rows is a failure on the
whole batch, and a pass makes its own products exact — and records every check with its
factors (a ``BoundLog``). The maxima are then combined across workers by MAX, each factor
separately (the whole batch's max|a| and max|b| may come from different workers), and every
check is evaluated again on them (``BoundCheck.fails``): exactly the value one process
computes, in the same arithmetic (float64 for the product checks, Python integers for the
others). Hence the step is skipped on every worker exactly when one process skips it.

Without an active log (one process, evaluation, the operators' tests) a check is evaluated
and raised at once, as it always was, and ``batch_rows`` is the identity.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from protocol.errors import OverflowBoundError


@dataclass(frozen=True)
class BoundCheck:
    """One run-time check: ``factors[0] * factors[1] * ... * scale < limit``.

    ``in_float``: the product is formed in float64, left to right (``ExactMatmul``'s
    (a * b) * K, ``check_sum_bound``'s max * N), as the single-process code always formed it;
    otherwise in Python integers. Factors are maxima (non-negative), so taking each one's max
    over workers gives the whole batch's value.
    """

    where: str
    what: str
    limit_text: str
    factors: tuple[float, ...] | tuple[int, ...]
    scale: int
    limit: float | int
    in_float: bool

    def value(self, factors: Sequence[float] | Sequence[int] | None = None) -> float | int:
        """The checked product, of the recorded factors or of ``factors`` (the whole batch's)."""
        values = self.factors if factors is None else factors
        if self.in_float:
            product = float(values[0])
            for factor in values[1:]:
                product = product * float(factor)
            return product * float(self.scale) if self.scale != 1 else product
        return math.prod(int(v) for v in values) * self.scale

    def fails(self, factors: Sequence[float] | Sequence[int] | None = None) -> bool:
        return self.value(factors) >= self.limit

    def error(self, factors: Sequence[float] | Sequence[int] | None = None) -> OverflowBoundError:
        return OverflowBoundError(
            self.where, float(self.value(factors)), self.what, self.limit_text
        )


class BoundLog:
    """The checks one worker made on its share of a step's batch, in order.

    ``examples``: the whole batch's examples (B); ``local_examples``: this worker's. A row
    count the worker sees, n = local_examples x (rows per example), stands for
    n / local_examples x examples rows of the whole batch.
    """

    def __init__(self, examples: int, local_examples: int) -> None:
        if not 1 <= local_examples <= examples:
            raise ValueError(f"a worker's share must hold 1..{examples} examples")
        self.examples = examples
        self.local_examples = local_examples
        self.checks: list[BoundCheck] = []

    def batch_rows(self, rows: int) -> int:
        if rows % self.local_examples:
            raise ValueError(f"{rows} rows are not whole examples of {self.local_examples}")
        return rows // self.local_examples * self.examples


_ACTIVE: ContextVar[BoundLog | None] = ContextVar("protocol_exact_bound_log", default=None)


@contextmanager
def recording(log: BoundLog) -> Iterator[BoundLog]:
    """Record (and globalize the row counts of) every check made inside the block."""
    token = _ACTIVE.set(log)
    try:
        yield log
    finally:
        _ACTIVE.reset(token)


def batch_rows(rows: int) -> int:
    """A row count over the step's batch as the whole batch has it (the identity unless a
    worker's share is being computed)."""
    log = _ACTIVE.get()
    return rows if log is None else log.batch_rows(rows)


def require_product(
    where: str,
    what: str,
    limit_text: str,
    factors: tuple[float, ...] | tuple[int, ...],
    scale: int,
    limit: float | int,
    *,
    in_float: bool,
) -> None:
    """Raise ``OverflowBoundError`` unless factors[0] * ... * scale < limit; record the check
    when a log is active (the worker's factors, the whole batch's ``scale``)."""
    check = BoundCheck(where, what, limit_text, factors, scale, limit, in_float)
    log = _ACTIVE.get()
    if log is not None:
        log.checks.append(check)
    if check.fails():
        raise check.error()


def record_only(check: BoundCheck) -> None:
    """Record a check its caller has already evaluated (``ExactMatmul``'s fast path)."""
    log = _ACTIVE.get()
    if log is not None:
        log.checks.append(check)


def logging_active() -> bool:
    return _ACTIVE.get() is not None

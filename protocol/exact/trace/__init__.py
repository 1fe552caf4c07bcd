"""A training step of the exact VM as an operator trace (issue 10; ``protocol.trace``).

    program_of(spec) -> Program              the step's operators, from the spec alone
    run_trace(spec, state, i) -> TraceRun    step i executed operator by operator: the
                                             post-state (== program.step), outputs, entries
    op_def(kind) -> OpDef                    what an operator computes, whole or per element

Each family's program is built by its module here (``mlp``, ``cnn``, ``transformer``:
``build(spec) -> Program``), on ``builder.Builder``; the operators are registered by
``ops`` (shared and dense), ``conv_ops`` and ``transformer_ops``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from protocol.errors import SpecError
from protocol.exact.state import State
from protocol.exact.trace import ops as _ops  # noqa: F401  (registers the shared operators)
from protocol.exact.trace.registry import OPS, Box, OpDef, op_def, register
from protocol.exact.trace.run import TraceRun, execute
from protocol.exact.trace.run import run_trace as _run_trace
from protocol.spec import JobSpec
from protocol.trace import Program

__all__ = ["OPS", "Box", "OpDef", "TraceRun", "execute", "op_def", "program_of", "register"]
__all__ += ["run_trace"]

_MODULES = {
    "mlp": "protocol.exact.trace.mlp",
    "cnn": "protocol.exact.trace.cnn",
    "transformer": "protocol.exact.trace.transformer",
}
_PROGRAMS: dict[str, Program] = {}


def program_of(spec: JobSpec) -> Program:
    """The operator program of one step of ``spec`` (the same for every step; cached)."""
    key = repr(spec.to_dict())
    if key not in _PROGRAMS:
        module = _MODULES.get(spec.model.family)
        if module is None:
            raise SpecError("model.family", f"no operator trace for {spec.model.family!r}")
        build: Callable[[JobSpec], Program] = importlib.import_module(module).build
        _PROGRAMS[key] = build(spec)
    return _PROGRAMS[key]


def run_trace(spec: JobSpec, state: State, i: int) -> TraceRun:
    """Step ``i`` of ``spec`` from ``state`` operator by operator; its post-state is
    ``protocol.exact.program.step(spec, state, i)`` bit for bit."""
    return _run_trace(spec, state, i, program_of(spec))

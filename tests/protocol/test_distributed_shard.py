"""The pure data-parallel decomposition (``protocol.exact.shard``), in one process.

W workers run ``shared_step`` on threads; their collective is a barrier that reduces the W
tensors exactly as an all-reduce does (MAX, SUM over int64). This checks the arithmetic and
the skip decision fast, for many specs;
``tests/services/distributed/test_distributed.py`` runs the same steps on real
``torch.distributed`` (gloo) process groups.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

from protocol.exact import init, state_hash, step
from protocol.exact.bounds import BoundLog, recording
from protocol.exact.fixedpoint import ExactMatmul, Operand
from protocol.exact.shard import (
    FactorPlan,
    Share,
    any_check_fails,
    check_world,
    encode_factors,
    shared_step,
)
from protocol.exact.state import State
from protocol.spec import JobSpec
from services.sim import scenarios
from tests.protocol.test_exact_bounds import _wide_context_spec
from tests.protocol.test_families import ADAMW, SGD, TINY_CNN, TINY_TRANSFORMER

MLP: dict[str, Any] = {
    "model": {"family": "mlp", "input_dim": 16, "hidden": [16], "classes": 4},
    "dataset": {"id": "synthetic-blobs-v1"},
    "batch_size": 8,
}
MODELS = {"mlp": MLP, "cnn": TINY_CNN, "transformer": TINY_TRANSFORMER}


class ThreadCollective:
    """W threads' in-place all-reduce: each puts its tensor, the last one in reduces, all
    read the result (a test double for ``torch.distributed.all_reduce``)."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.barrier = threading.Barrier(world)
        self.slots: list[torch.Tensor | None] = [None] * world
        self.result: torch.Tensor | None = None
        self.bytes = 0

    def worker(self, rank: int) -> Any:
        collective = self

        class View:
            def max_(self, t: torch.Tensor) -> None:
                collective.reduce(rank, t, "max")

            def sum_(self, t: torch.Tensor) -> None:
                collective.reduce(rank, t, "sum")

        return View()

    def reduce(self, rank: int, t: torch.Tensor, op: str) -> None:
        self.slots[rank] = t.clone()
        if self.barrier.wait() == 0:
            stacked = torch.stack([s for s in self.slots if s is not None])
            self.result = stacked.amax(dim=0) if op == "max" else stacked.sum(dim=0)
            self.bytes += t.numel() * 8
        self.barrier.wait()
        assert self.result is not None
        t.copy_(self.result)
        self.barrier.wait()


def run_shared(spec: JobSpec, world: int, steps: int) -> list[State]:
    """Every worker's final state after ``steps`` shared steps from state 0."""
    return run_shared_from(spec, init(spec), world, steps)


def run_shared_from(spec: JobSpec, start: State, world: int, steps: int = 1) -> list[State]:
    """Every worker's final state after ``steps`` shared steps from ``start`` (step 0)."""
    collective = ThreadCollective(world)
    finals: list[State | None] = [None] * world
    errors: list[BaseException] = []

    def work(rank: int) -> None:
        try:
            view = collective.worker(rank)
            state, plan = dict(start), FactorPlan()
            for i in range(steps):
                state = shared_step(spec, state, i, Share(rank, world), view, plan)
            finals[rank] = state
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            collective.barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [s for s in finals if s is not None]


def single(spec: JobSpec, steps: int) -> State:
    state = init(spec)
    for i in range(steps):
        state = step(spec, state, i)
    return state


def wide_context_state(spec: JobSpec) -> State:
    """tests/protocol/test_exact_bounds.py's state whose mlp.out bias gradient would wrap."""
    state = init(spec)
    for name, tensor in state.items():
        if name != "step":
            tensor.zero_()
    state["head.weight"][:, 74] = 1 << 30
    state["norm.gain"][:] = 1 << 33
    state["block0.norm1.gain"][:] = 1 << 16
    state["block0.mlp.out.weight"][:] = -8
    state["block0.mlp.in.weight"][:] = 1 << 17
    state["block0.norm2.gain"][:] = 1 << 20
    return state


def spec_of(family: str, optimizer: dict[str, Any], **overrides: Any) -> JobSpec:
    return scenarios.spec_for({**MODELS[family], "optimizer": optimizer, **overrides}, seed=3)


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_worker_ends_where_one_process_does(family: str, optimizer: str) -> None:
    spec = spec_of(family, SGD if optimizer == "sgd" else ADAMW, steps=12)
    want = state_hash(single(spec, 12))
    for world in (2, 3, 4):
        finals = run_shared(spec, world, 12)
        assert [state_hash(s) for s in finals] == [want] * world


def test_a_step_skipped_by_the_overflow_rule_is_skipped_on_every_worker() -> None:
    # lr 1 with momentum 0.99: from step 52 on some forward products pass 2^53 and the
    # steps are skipped; the workers' trajectories must skip the same ones.
    spec = spec_of("mlp", {"name": "sgd", "lr_log2": 0, "momentum": 0.99}, steps=60)
    state = init(spec)
    skipped = 0
    for i in range(60):
        after = step(spec, state, i)
        skipped += all(torch.equal(after[n], state[n]) for n in state if n != "step")
        state = after
    assert skipped > 0
    for world in (2, 4):
        assert {state_hash(s) for s in run_shared(spec, world, 60)} == {state_hash(state)}


def test_a_sum_over_the_whole_batch_is_checked_with_the_whole_batch_rows() -> None:
    # tests/protocol/test_exact_bounds.py's state: a bias gradient summed over B x T = 2^15
    # rows would pass 2^62; a worker holding half the rows would pass with its own count.
    spec = _wide_context_spec()
    state = wide_context_state(spec)
    assert torch.equal(step(spec, state, 0)["block0.mlp.out.bias"], state["block0.mlp.out.bias"])
    want = state_hash(step(spec, state, 0))
    for world in (2, 4):
        finals = run_shared_from(spec, state, world)
        assert {state_hash(s) for s in finals} == {want}


def test_the_workers_maxima_are_combined_factor_by_factor() -> None:
    # x^T g over 2 rows: max|x| = 2^26 on worker 0, max|g| = 2^26 on worker 1. Each passes
    # alone (2^26 * 1 * 2 < 2^53); the whole batch does not (2^26 * 2^26 * 2 >= 2^53).
    logs = []
    for x_max, g_max in ((2.0**26, 1.0), (1.0, 2.0**26)):
        log = BoundLog(examples=2, local_examples=1)
        with recording(log):
            ExactMatmul()(
                Operand.of(torch.tensor([[int(x_max)]])),
                Operand.of(torch.tensor([[int(g_max)]])),
                "w.grad_weight",
                over_rows=True,
            )
        logs.append(log)
    factors = [encode_factors(log.checks, torch.device("cpu")) for log in logs]
    combined = torch.stack(factors).amax(dim=0).tolist()
    assert not any_check_fails(logs[0].checks, factors[0].tolist())
    assert not any_check_fails(logs[1].checks, factors[1].tolist())
    assert any_check_fails(logs[0].checks, combined)


def test_a_worker_needs_at_least_one_example() -> None:
    spec = spec_of("mlp", SGD)
    check_world(spec, spec.batch_size)
    with pytest.raises(ValueError):
        check_world(spec, spec.batch_size + 1)

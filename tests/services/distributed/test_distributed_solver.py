"""A solver that trains on a data-parallel worker group (real gloo ranks in worker processes),
checked by single-process verifiers, on the in-process network of
``tests/services/agents/test_agents.py``.

* an honest ``--workers 2`` solver is paid: its root is the one-process root;
* a cheating rank (it adds one unit to its gradient share at step 9) is caught: the dispute
  locates step 9 and the solver is slashed;
* a rank killed mid-job: the group is restarted, the segment rerun from the last checkpoint,
  and the job settles with the solver paid and its stake intact.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from protocol.spec import JobSpec
from services.distributed.pool import PoolConfig, WorkerPool
from services.sim.network import JobTerms, Network
from tests.ledger_helpers import tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


@pytest.fixture
def spec() -> JobSpec:
    return tiny_spec()


@pytest.fixture
def pools() -> Iterator[list[WorkerPool]]:
    made: list[WorkerPool] = []
    yield made
    for pool in made:
        pool.close()


def _pool(pools: list[WorkerPool], **tamper: int) -> WorkerPool:
    config = PoolConfig(world=2, timeout=30, tamper={int(k[1:]): v for k, v in tamper.items()})
    pool = WorkerPool(config)
    pools.append(pool)
    return pool


def _resolved(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["data"] for e in job["history"] if e["kind"] == "dispute_resolved"]


def test_a_workers_2_solver_is_paid_and_verifiers_attest(
    spec: JobSpec, pools: list[WorkerPool]
) -> None:
    net = Network()
    solver = net.add_solver("solver", workers=_pool(pools))
    net.add_verifier("verifier")
    net.warm_up()
    job_id = net.post_job(spec, JobTerms(sample_count=8))
    net.run_jobs(job_id, max_rounds=200)
    job = net.job(job_id)
    assert job["status"] == "settled"
    assert job["solver"] == solver.address and len(job["attesters"]) == 1
    assert int(net.client.get_account(solver.address)["balance"]) == JobTerms().payment


def test_a_cheating_rank_is_caught_at_its_step(spec: JobSpec, pools: list[WorkerPool]) -> None:
    net = Network()
    net.add_solver("solver", workers=_pool(pools, r1=9))  # rank 1 tampers at step 9
    net.add_verifier("verifier")
    net.warm_up()
    job_id = net.post_job(spec, JobTerms(sample_count=8))
    net.run_jobs(job_id, max_rounds=200)
    job = net.job(job_id)
    assert job["status"] == "slashed"
    assert _resolved(job)[0]["located_step"] == 9


def test_a_rank_killed_mid_job_is_replaced_and_the_job_settles(
    spec: JobSpec, pools: list[WorkerPool]
) -> None:
    net = Network()
    pool = _pool(pools)
    solver = net.add_solver("solver", workers=pool)
    net.add_verifier("verifier")
    net.warm_up()
    before = net.client.get_account(solver.address)
    job_id = net.post_job(spec, JobTerms(sample_count=8))

    def some_leaves() -> bool:
        run = solver.runs.get(job_id)
        return run is not None and len(run.entries) >= 3

    net.run_until(some_leaves, max_rounds=100)
    committed = list(solver.runs[job_id].entries)
    os.kill(pool.worker_pids()[0], signal.SIGKILL)
    net.run_jobs(job_id, max_rounds=200)
    job = net.job(job_id)
    assert pool.restarts == 1
    assert solver.runs[job_id].entries[: len(committed)] == committed  # nothing lost
    assert job["status"] == "settled"
    after = net.client.get_account(solver.address)
    assert int(after["balance"]) == int(before["balance"]) + int(job["price"])
    assert int(after["bonded"]) + int(after["locked"]) == int(before["bonded"]) + int(
        before["locked"]
    )

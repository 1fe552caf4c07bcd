"""The honest soak: many randomized honest jobs, and not one slash, challenge or lost bond.

Specs vary in seed, dataset, model width and depth, batch size, learning rate, momentum, steps
and checkpoint interval; each network runs two solvers and two verifiers whose torch thread
counts differ (every agent sets its own count before it ticks), several jobs at once. Exact
training must make every re-execution agree with every commitment regardless.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from contracts_sim.invariants import check_invariant
from protocol.datasets import load_dataset
from protocol.exact import get_threads, set_threads
from protocol.spec import JobSpec, parse_spec
from services.network import JobTerms, Network

pytestmark = pytest.mark.adversarial

SOAK_JOBS = 100
JOBS_PER_NETWORK = 4
DATASETS = [
    "synthetic-blobs-v1",
    "blobs-f4-c2-n64-s1",
    "blobs-f8-c3-n128-s2",
    "blobs-f12-c5-n96-s3",
    "blobs-f6-c4-n80-s4",
    "digits",
]
HIDDEN: list[list[int]] = [[], [4], [8], [16], [8, 8], [24], [6, 5, 4]]


class PinnedThreads:
    """An agent that sets torch's CPU thread count before each of its ticks."""

    def __init__(self, agent: Any, threads: int) -> None:
        self.agent = agent
        self.threads = threads

    def tick(self) -> None:
        set_threads(self.threads)
        self.agent.tick()

    def ready(self) -> bool:
        return bool(self.agent.ready())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.agent, name)


def random_spec(rng: random.Random) -> JobSpec:
    dataset_id = rng.choice(DATASETS)
    dataset = load_dataset(dataset_id)
    interval = rng.choice([1, 2, 3, 4, 5, 6])
    return parse_spec(
        {
            "version": 1,
            "model": {
                "family": "mlp",
                "input_dim": dataset.num_features,
                "hidden": rng.choice(HIDDEN),
                "classes": dataset.num_classes,
            },
            "dataset": {"id": dataset_id, "hash": dataset.content_hash_hex},
            "seed": rng.randrange(2**40),
            "steps": interval * rng.randint(2, 8),
            "batch_size": rng.choice([1, 2, 4, 8, 16]),
            "optimizer": {
                "name": "sgd",
                "lr_log2": rng.randint(-7, -2),
                "momentum": rng.choice([0.0, 0.5, 0.875]),
            },
            "checkpoint_interval": interval,
        }
    )


@dataclass
class SoakReport:
    jobs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    shapes: set[tuple[Any, ...]] = field(default_factory=set)
    attestations: int = 0
    devices: set[str] = field(default_factory=set)  # where the solvers trained
    wall_s: float = 0.0


def soak(
    jobs: int,
    seed: int,
    *,
    solver_device: str = "cpu",
    solver_threads: tuple[int, int] = (1, 2),
    verifier_threads: tuple[int, int] = (2, 1),
) -> SoakReport:
    rng = random.Random(seed)
    report = SoakReport()
    started = time.perf_counter()
    threads_before = get_threads()
    try:
        for batch in range(0, jobs, JOBS_PER_NETWORK):
            net = Network(salt=f"soak/{seed}/{batch}")
            for i, threads in enumerate(solver_threads):
                agent = net.add_solver(
                    f"solver-{i}", device=solver_device, stake=8 * JobTerms().min_stake
                )
                assert agent.device.type == solver_device
                net.agents[-1] = PinnedThreads(agent, threads)
            for i, threads in enumerate(verifier_threads):
                agent = net.add_verifier(f"verifier-{i}")
                net.agents[-1] = PinnedThreads(agent, threads)
            net.warm_up()
            job_ids = []
            for j in range(min(JOBS_PER_NETWORK, jobs - batch)):
                spec = random_spec(rng)
                k = rng.randint(1, min(8, spec.num_segments))
                job_ids.append(
                    net.post_job(spec, JobTerms(sample_count=k), submitter=f"submitter-{j}")
                )
                report.shapes.add(
                    (spec.dataset.id, spec.model.hidden, spec.steps, spec.checkpoint_interval)
                )
            net.run_jobs(*job_ids, max_rounds=200)
            check_invariant(net.chain.state)
            report.devices.update(
                str(run.device)
                for agent in net.agents
                for run in getattr(agent, "runs", {}).values()
            )
            for job_id in job_ids:
                record = net.job(job_id)
                report.jobs += 1
                report.statuses[record["status"]] += 1
                report.attestations += len(record["attesters"])
                report.events.update(event["kind"] for event in record["history"])
    finally:
        set_threads(threads_before)
    report.wall_s = time.perf_counter() - started
    return report


def assert_all_honest_settled(report: SoakReport, jobs: int) -> None:
    assert report.jobs == jobs
    assert report.statuses == Counter({"settled": jobs})
    for kind in ("challenged", "slashed", "bond_forfeited", "dispute_resolved"):
        assert report.events[kind] == 0, f"{report.events[kind]} {kind} events"
    assert report.events["job_settled"] == jobs
    assert report.attestations >= jobs  # every job was checked by at least one verifier


def test_honest_soak_never_slashes() -> None:
    report = soak(SOAK_JOBS, seed=2026)
    assert_all_honest_settled(report, SOAK_JOBS)
    assert report.devices == {"cpu"}
    assert len(report.shapes) > SOAK_JOBS // 2  # really different jobs
    print(
        f"\nsoak: {report.jobs} jobs, {report.statuses['settled']} settled, "
        f"{report.events['slashed']} slashed, {report.attestations} attestations, "
        f"{len(report.shapes)} shapes, {report.wall_s:.1f} s"
    )


@pytest.mark.gpu
def test_cuda_solver_against_cpu_verifiers() -> None:
    report = soak(12, seed=7, solver_device="cuda")
    assert_all_honest_settled(report, 12)
    assert {device.split(":")[0] for device in report.devices} == {"cuda"}
    print(f"\ncuda soak: {report.jobs} jobs settled, 0 slashed, {report.wall_s:.1f} s")

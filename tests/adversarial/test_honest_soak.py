"""The honest soak: many randomized honest jobs, and not one slash, challenge or lost bond.

Specs vary in seed, dataset, model width and depth, batch size, learning rate, momentum, steps
and checkpoint interval; each network runs two solvers and two verifiers whose torch thread
counts differ (every agent sets its own count before it ticks), several jobs at once. Exact
training must make every re-execution agree with every commitment regardless.

Beside them a misbehaving submitter posts what no solver could train and terms no ledger should
take (a wrong dataset hash, an unknown dataset, widths that do not fit the data, a state too
large to adjudicate, zero payment, a sample larger than the job): each is refused with a typed
error and creates nothing. It also posts specs whose learning rate diverges: the ledger takes
them, and the overflow rule (a step that would leave the exact range is skipped) lets the
solver finish them — so no honest solver is ever slashed for a submitter's choices.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from contracts_sim.invariants import check_invariant
from contracts_sim.transactions import sign_transaction
from protocol.datasets import Dataset, load_dataset
from protocol.errors import OverflowBoundError, ProofNetError
from protocol.exact import get_threads, init, set_threads, step
from protocol.exact.program import train_step
from protocol.models import ModelSpec
from protocol.spec import JobSpec, parse_spec
from services.sim.network import JobTerms, Network, key_for

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
    assert isinstance(dataset, Dataset)
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


def diverging_spec(rng: random.Random) -> JobSpec:
    """A spec whose learning rate (1 or 1/2) and momentum drive the weights out of the exact
    range: some of its steps fall under the overflow rule."""
    dataset = load_dataset("synthetic-blobs-v1")
    assert isinstance(dataset, Dataset)
    return parse_spec(
        {
            "version": 1,
            "model": {
                "family": "mlp",
                "input_dim": dataset.num_features,
                "hidden": [8],
                "classes": dataset.num_classes,
            },
            "dataset": {"id": dataset.id, "hash": dataset.content_hash_hex},
            "seed": rng.randrange(2**40),
            "steps": 40,
            "batch_size": 1,
            "optimizer": {"name": "sgd", "lr_log2": rng.choice([0, -1]), "momentum": 0.99},
            "checkpoint_interval": 4,
        }
    )


BASE_ORDER = {
    "version": 1,
    "model": {"family": "mlp", "input_dim": 16, "hidden": [], "classes": 4},
    "dataset": {"id": "synthetic-blobs-v1", "hash": "00" * 32},
    "seed": 0,
    "steps": 1,
    "batch_size": 1,
    "optimizer": {"name": "sgd", "lr_log2": -4},
    "checkpoint_interval": 1,
}
"""A parseable spec whose only use is ``JobTerms.body``; the body's spec is replaced."""


def skipped_steps(spec: JobSpec) -> int:
    """How many of ``spec``'s steps the overflow rule skips."""
    state, skipped = init(spec), 0
    for i in range(spec.steps):
        try:
            train_step(spec, state, i)
        except OverflowBoundError:
            skipped += 1
        state = step(spec, state, i)
    return skipped


def bad_submission(rng: random.Random) -> tuple[str, dict[str, Any], JobTerms]:
    """(what is wrong, spec as a mapping, terms): a job order the ledger must refuse."""
    spec = random_spec(rng).to_dict()
    terms = JobTerms(sample_count=1)
    kind = rng.choice(
        ["dataset_hash", "unknown_dataset", "input_dim", "classes", "huge_state", "payment", "k"]
    )
    if kind == "dataset_hash":
        spec["dataset"]["hash"] = "ab" * 32
    elif kind == "unknown_dataset":
        spec["dataset"]["id"] = "no-such-dataset"
    elif kind == "input_dim":
        spec["model"]["input_dim"] += 1
    elif kind == "classes":
        spec["model"]["classes"] += 1
    elif kind == "huge_state":
        spec["model"]["hidden"] = [2048, 2048]  # ~4.3M parameters: past max_blob_bytes
    elif kind == "payment":
        terms = JobTerms(payment=0)
    else:
        terms = JobTerms(sample_count=10_000)
    return kind, spec, terms


def post_refused(net: Network, who: str, spec: dict[str, Any], terms: JobTerms) -> str:
    """Post a bad job order; return the error code, after checking it created nothing."""
    jobs_before = len(net.client.list_jobs())
    body = {**terms.body(parse_spec(BASE_ORDER)), "spec": spec}  # the terms, around any mapping
    key = key_for(who, net.salt)
    nonce = net.client.pending_nonce(key.address)
    balance = int(net.client.get_account(key.address)["balance"])
    tx = sign_transaction(key, net.chain_id, nonce, "post_job", body)
    with pytest.raises(ProofNetError) as refused:
        net.client.post_job(tx, wait=False)
    assert len(net.client.list_jobs()) == jobs_before
    assert int(net.client.get_account(key.address)["balance"]) == balance
    assert net.client.pending_nonce(key.address) == nonce
    return str(getattr(refused.value, "code", type(refused.value).__name__))


@dataclass
class SoakReport:
    jobs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    shapes: set[tuple[Any, ...]] = field(default_factory=set)
    attestations: int = 0
    devices: set[str] = field(default_factory=set)  # where the solvers trained
    wall_s: float = 0.0
    refused: Counter[str] = field(default_factory=Counter)  # bad order -> refusals
    refusal_codes: set[str] = field(default_factory=set)
    diverging: list[JobSpec] = field(default_factory=list)  # accepted, must still settle
    slashes: int = 0  # over every job of every network, bad ones included


def soak(
    jobs: int,
    seed: int,
    *,
    solver_device: str = "cpu",
    solver_threads: tuple[int, int] = (1, 2),
    verifier_threads: tuple[int, int] = (2, 1),
    misbehaving_submitter: bool = False,
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
                verifier = net.add_verifier(f"verifier-{i}")
                net.agents[-1] = PinnedThreads(verifier, threads)
            net.warm_up()
            job_ids = []
            for j in range(min(JOBS_PER_NETWORK, jobs - batch)):
                spec = random_spec(rng)
                k = rng.randint(1, min(8, spec.num_segments))
                job_ids.append(
                    net.post_job(spec, JobTerms(sample_count=k), submitter=f"submitter-{j}")
                )
                assert isinstance(spec.model, ModelSpec)
                report.shapes.add(
                    (spec.dataset.id, spec.model.hidden, spec.steps, spec.checkpoint_interval)
                )
            hostile_ids = []
            if misbehaving_submitter:
                mallory = key_for("mallory", net.salt)
                net.send(mallory, "faucet", {"amount": 10 * JobTerms().payment})
                for _ in range(2):
                    kind, bad_spec, bad_terms = bad_submission(rng)
                    code = post_refused(net, "mallory", bad_spec, bad_terms)
                    report.refused[kind] += 1
                    report.refusal_codes.add(code)
                diverging = diverging_spec(rng)
                report.diverging.append(diverging)
                hostile_ids.append(net.post_job(diverging, JobTerms(), submitter="mallory-2"))
            net.run_jobs(*job_ids, *hostile_ids, max_rounds=200)
            check_invariant(net.chain.state)
            report.devices.update(
                str(run.device)
                for agent in net.agents
                for run in getattr(agent, "runs", {}).values()
            )
            report.slashes += sum(
                record["status"] == "slashed" for record in net.client.list_jobs()
            )
            for job_id in hostile_ids:
                assert net.job(job_id)["status"] == "settled", net.job(job_id)["status"]
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
    report = soak(SOAK_JOBS, seed=2026, misbehaving_submitter=True)
    assert_all_honest_settled(report, SOAK_JOBS)
    assert report.slashes == 0
    # The misbehaving submitter tried every kind of bad order, and each was refused.
    assert set(report.refused) == {
        "dataset_hash",
        "unknown_dataset",
        "input_dim",
        "classes",
        "huge_state",
        "payment",
        "k",
    }
    assert report.refusal_codes <= {"untrainable_spec", "malformed_body"}
    assert any(skipped_steps(spec) for spec in report.diverging[:3])
    assert report.devices == {"cpu"}
    assert len(report.shapes) > SOAK_JOBS // 2  # really different jobs
    print(
        f"\nsoak: {sum(report.refused.values())} bad orders refused, "
        f"{len(report.diverging)} diverging specs settled"
    )
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

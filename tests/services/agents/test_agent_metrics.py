"""Agents' Prometheus metrics: the counters move where the work happens, and each agent's
HTTP endpoint serves them at /metrics (its JSON figures moved to /stats)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from contracts_sim.records import JobStatus
from contracts_sim.transactions import FaucetBody
from protocol.errors import ProofNetError
from protocol.spec import JobSpec
from protocol.types import Amount
from services.agents.moves import Move
from services.agents.runner import run_loop
from services.agents.server import create_solver_app, create_verifier_app
from services.agents.telemetry import AgentTelemetry
from services.sim.network import JobTerms, Network
from services.strategies.cheaters import PerturbStep

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(client: TestClient) -> Samples:
    """GET /metrics and parse it as Prometheus would."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((f"proofnet_agent_{name}", tuple(sorted(labels.items()))), 0.0)


def _moves(samples: Samples) -> dict[str, float]:
    """dispute_moves_total by kind."""
    return {
        dict(labels)["kind"]: value
        for (name, labels), value in samples.items()
        if name == "proofnet_agent_dispute_moves_total"
    }


def _play(net: Network, spec: JobSpec) -> str:
    net.warm_up()
    job_id = net.post_job(spec, JobTerms(sample_count=8))
    net.run_jobs(job_id, max_rounds=200)
    net.round()  # the agents read the closed job once more
    return job_id


def test_an_honest_job_moves_the_solver_and_verifier_counters(tiny_spec: JobSpec) -> None:
    net = Network()
    solver = net.add_solver("solver")
    verifier = net.add_verifier("verifier")
    job_id = _play(net, tiny_spec)
    assert net.job(job_id)["status"] == "settled"

    solved = _scrape(TestClient(create_solver_app(solver)))
    assert _value(solved, "jobs_seen_total") == 1
    assert _value(solved, "bids_total") == 1
    assert _value(solved, "jobs_won_total") == 1
    assert _value(solved, "jobs_settled_total") == 1
    assert _value(solved, "jobs_slashed_total") == 0
    assert _value(solved, "steps_trained_total") == tiny_spec.steps
    assert _value(solved, "transactions_total", kind="bid", result="accepted") == 1
    assert _value(solved, "transactions_total", kind="commit_final", result="accepted") == 1
    assert _value(solved, "dispute_moves_total", kind="reveal_leaf") == 0
    info = {"address": solver.address, "role": "solver", "strategy": solver.strategy.name}
    assert _value(solved, "info", **info) == 1

    checked = _scrape(TestClient(create_verifier_app(verifier)))
    assert _value(checked, "jobs_seen_total") == 1
    assert _value(checked, "samples_attested_total") == 1
    assert _value(checked, "samples_challenged_total") == 0
    assert _value(checked, "jobs_settled_total") == 1
    sampled = verifier.metrics()["sample_steps"]
    assert sampled > 0
    assert _value(checked, "steps_reexecuted_total", source="sample") == sampled
    assert _value(checked, "errors_total", where="job_failed") == 0


def test_a_cheater_is_challenged_and_the_game_is_counted_by_move(tiny_spec: JobSpec) -> None:
    net = Network()
    cheater = net.add_solver("cheater", PerturbStep(step=9))
    verifier = net.add_verifier("verifier")
    job_id = _play(net, tiny_spec)
    assert net.job(job_id)["status"] == "slashed"

    checked = _scrape(TestClient(create_verifier_app(verifier)))
    assert _value(checked, "samples_challenged_total") == 1
    assert _value(checked, "samples_attested_total") == 0
    assert _value(checked, "jobs_slashed_total") == 1
    truth = verifier.metrics()["truth_steps"]
    assert truth > 0
    assert _value(checked, "steps_reexecuted_total", source="truth") == truth

    solved = _scrape(TestClient(create_solver_app(cheater)))
    assert _value(solved, "jobs_slashed_total") == 1
    assert _value(solved, "jobs_settled_total") == 0
    dispute = net.client.get_dispute(net.job(job_id)["disputes"][0])
    for agent, scraped in ((cheater, solved), (verifier, checked)):
        on_chain = Counter(m["kind"] for m in dispute["moves"] if m["sender"] == agent.address)
        assert on_chain, "each side moved"
        assert _moves(scraped) == dict(on_chain)


def test_stats_keeps_the_json_figures(tiny_spec: JobSpec) -> None:
    net = Network()
    verifier = net.add_verifier("verifier")
    stats = TestClient(create_verifier_app(verifier)).get("/stats").json()
    assert stats["role"] == "verifier"
    assert stats["steps_reexecuted"] == 0


def test_rejected_transactions_and_failed_ticks_count_as_errors() -> None:
    net = Network()
    verifier = net.add_verifier("verifier")

    class Flaky:
        """An agent whose every tick fails, as when the chain is unreachable."""

        name = "flaky"
        telemetry = verifier.telemetry

        def __init__(self) -> None:
            self.ticks = 0

        def tick(self) -> None:
            self.ticks += 1
            if self.ticks >= 2:
                stop.set()
                raise RuntimeError("a bug")
            raise ProofNetError("chain unreachable")

    stop = threading.Event()
    run_loop(Flaky(), threading.Lock(), stop, poll=0.0)
    net.round()
    # A faucet request for more than faucet_max: the chain refuses it.
    verifier.send(Move.of(FaucetBody(Amount(10**30))))
    scraped = _scrape(TestClient(create_verifier_app(verifier)))
    assert _value(scraped, "errors_total", where="tick_failed") == 1
    assert _value(scraped, "errors_total", where="tick_crashed") == 1
    assert _value(scraped, "transactions_total", kind="faucet", result="rejected") == 1


def test_each_agent_has_its_own_registry() -> None:
    first, second = AgentTelemetry("solver", "0xa"), AgentTelemetry("solver", "0xb")
    first.bids.inc()
    assert b"proofnet_agent_bids_total 1.0" in first.exposition()
    assert b"proofnet_agent_bids_total 0.0" in second.exposition()


@pytest.mark.parametrize("status", [JobStatus.SETTLED, JobStatus.SLASHED])
def test_a_job_is_counted_once_however_often_it_is_read(status: JobStatus) -> None:
    telemetry = AgentTelemetry("solver", "0xa")
    for _ in range(3):
        telemetry.saw_job("j", JobStatus.COMMITTED, involved=True, won=True)
        telemetry.saw_job("j", status, involved=True, won=True)
    text = telemetry.exposition().decode()
    assert "proofnet_agent_jobs_seen_total 1.0" in text
    assert "proofnet_agent_jobs_won_total 1.0" in text
    assert f"proofnet_agent_jobs_{status}_total 1.0" in text

"""Agents on a chain with forced errors: the solver plants, reveals and audits; an honest
verifier challenges every trap in its sample and is paid; a lazy one forfeits its bond."""

from __future__ import annotations

from contracts_sim.params import TEST
from protocol.spec import JobSpec
from services.network import JobTerms, Network
from services.strategies.cheaters import PerturbStep
from services.strategies.verifiers import LazyVerifier

HALF_TRAPS = TEST.with_changes(forced_error_bps=5_000, audit_window=6)
"""Half the segments are forced errors: every sample of four holds one (nearly) always."""


def _events(job: dict, kind: str) -> list[dict]:
    return [e["data"] for e in job["history"] if e["kind"] == kind]


def _play(net: Network, spec: JobSpec, sample_count: int = 4) -> dict:
    net.warm_up()
    job_id = net.post_job(spec, JobTerms(sample_count=sample_count))
    net.run_jobs(job_id, max_rounds=400)
    return net.job(job_id)


def test_honest_agents_settle_through_forced_errors(tiny_spec: JobSpec) -> None:
    net = Network(params=HALF_TRAPS)
    solver = net.add_solver("solver")
    honest = net.add_verifier("honest")
    lazy = net.add_verifier("lazy", LazyVerifier())
    job = _play(net, tiny_spec)
    assert job["status"] == "settled", job["status"]
    confirmed = _events(job, "forced_error_confirmed")
    assert confirmed and {c["challenger"] for c in confirmed} == {honest.address}
    assert honest.address in job["attesters"]  # paid as the attester it was
    audits = _events(job, "audit_resolved")
    assert audits and all(a["attester"] == lazy.address and a["attester_lost"] for a in audits)
    assert lazy.address not in job["attesters"]
    assert int(net.client.get_account(solver.address)["jobs_slashed"]) == 0


def test_a_cheat_is_still_slashed_among_forced_errors(tiny_spec: JobSpec) -> None:
    net = Network(params=HALF_TRAPS)
    net.add_solver("cheater", PerturbStep(step=9))
    net.add_verifier("honest")
    job = _play(net, tiny_spec, sample_count=8)  # the whole job: the cheat is in the sample
    assert job["status"] == "slashed"
    located = [r["located_step"] for r in _events(job, "dispute_resolved")]
    assert 9 in located

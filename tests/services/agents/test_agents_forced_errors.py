"""Agents on a chain with forced errors: the solver plants, reveals and audits; an honest
verifier challenges every trap in its sample and is paid; a lazy one forfeits its bond."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts_sim.params import TEST
from protocol.spec import JobSpec
from services.agents.strategy import JobView, SolverStrategy
from services.sim.network import JobTerms, Network
from services.strategies.cheaters import PerturbStep
from services.strategies.verifiers import LazyVerifier

HALF_TRAPS = TEST.with_changes(forced_error_bps=5_000, audit_window=6)
"""Half the segments are forced errors: every sample of four holds one (nearly) always."""


def _events(job: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in job["history"] if e["kind"] == kind]


def _play(net: Network, spec: JobSpec, sample_count: int = 4) -> dict[str, Any]:
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


def test_a_restarted_verifier_still_opens_its_seals(tiny_spec: JobSpec) -> None:
    """What a seal hides, and the game of each opened seal, are rebuilt after a restart past the
    window (red-team E3, H2): the verifier opens every seal, plays each from the segment's
    pre-state and keeps its attestation."""
    net = Network(params=HALF_TRAPS)
    net.add_solver("solver")
    honest = net.add_verifier("honest")
    net.warm_up()
    job_id = net.post_job(tiny_spec, JobTerms(sample_count=8))  # every trap, later ones too

    def window_closed() -> bool:
        deadline = net.job(job_id).get("challenge_deadline")
        return deadline is not None and net.client.head_height() > int(deadline)

    net.run_until(window_closed)
    # The restart, after the window: nothing in memory, and no verdict left to give.
    for kept in (honest.seals, honest.games, honest.sampled_blobs, honest.truths):
        kept.clear()
    net.run_jobs(job_id, max_rounds=400)
    job = net.job(job_id)
    assert job["status"] == "settled"
    assert honest.address in job["attesters"]
    assert not _events(job, "attestation_forfeited")
    assert _events(job, "forced_error_confirmed")  # its seals were played after the restart


class WithholdOneBlob(SolverStrategy):
    """Honest, but does not serve the blob of one leaf until a data request makes it publish."""

    name = "withhold-one-blob"

    def serve_leaves(self, job: JobView, entries: list[bytes]) -> list[bytes] | None:
        self.withheld = entries[1]  # the pre-state of segment 1
        return entries

    def serve_blob(self, job: JobView, entry: bytes, blob: bytes) -> bytes | None:
        return None if entry == getattr(self, "withheld", None) else blob


def test_no_verdict_while_a_sampled_segment_is_unchecked(tiny_spec: JobSpec) -> None:
    """A verifier that finds a trap but lacks one segment's data asks for it on chain and judges
    the whole sample before it seals and attests (red-team E4/E5): its attestation never
    vouches for a segment it did not re-execute."""
    net = Network(params=HALF_TRAPS)
    net.add_solver("solver", WithholdOneBlob())
    honest = net.add_verifier("honest")
    job = _play(net, tiny_spec, sample_count=8)
    kinds = [e["kind"] for e in job["history"]]
    assert "data_requested" in kinds and "data_published" in kinds
    assert kinds.index("data_published") < kinds.index("attested")
    assert job["status"] == "settled" and honest.address in job["attesters"]
    assert not _events(job, "audit_resolved")


class ServeOnlyInTheWindow(SolverStrategy):
    """Honest, but stops serving its data once the challenge window has closed (nothing obliges
    it to serve after: a data request is only allowed within the window)."""

    name = "serve-only-in-the-window"
    closed = False

    def serve_leaves(self, job: JobView, entries: list[bytes]) -> list[bytes] | None:
        return None if self.closed else entries

    def serve_blob(self, job: JobView, entry: bytes, blob: bytes) -> bytes | None:
        return None if self.closed else blob


def test_a_restarted_verifier_keeps_what_it_sealed_on_disk(
    tiny_spec: JobSpec, tmp_path: Path
) -> None:
    """A verifier restarted after the window, when the solver no longer serves anything, opens
    and plays its seals from what it wrote down when it sealed (red-team R1)."""
    net = Network(params=HALF_TRAPS)
    strategy = ServeOnlyInTheWindow()
    net.add_solver("solver", strategy)
    honest = net.add_verifier("honest", data_dir=tmp_path / "verifier")
    net.warm_up()
    job_id = net.post_job(tiny_spec, JobTerms(sample_count=8))

    def window_closed() -> bool:
        deadline = net.job(job_id).get("challenge_deadline")
        return deadline is not None and net.client.head_height() > int(deadline)

    net.run_until(window_closed)
    strategy.closed = True
    net.agents.remove(honest)  # the restart: a new process with the same key and data dir
    restarted = net.add_verifier("honest", data_dir=tmp_path / "verifier")
    net.run_jobs(job_id, max_rounds=400)
    job = net.job(job_id)
    assert job["status"] == "settled"
    assert restarted.address in job["attesters"]
    assert not _events(job, "attestation_forfeited")
    assert _events(job, "forced_error_confirmed")


def test_a_corrupt_verdict_record_is_a_clear_error(tmp_path: Path) -> None:
    from services.agents.seal_store import SealStore
    from services.errors import SealStoreError

    (tmp_path / "seals.json").write_text("not json", encoding="utf-8")
    with pytest.raises(SealStoreError, match="sealed verdicts"):
        SealStore(tmp_path)
    (tmp_path / "seals.json").write_text("[]", encoding="utf-8")
    with pytest.raises(SealStoreError):
        SealStore(tmp_path)

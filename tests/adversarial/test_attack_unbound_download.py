"""unbound-download: a submitter's ``proofnet download`` used to say "hash verified" for any
model hashing to the solver's *declared* ``final_state_hash`` — even for a slashed or unsettled
job, or a declared hash that is not the committed trajectory's last leaf (a backdoored model).
Now it writes a model only for a settled job, after checking the served leaf list against the
committed root, its last leaf against the declared final state, and the model against both; and
a verifier never vouches for a final state that is not the last leaf."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.exact import encode_state, init
from protocol.hashing import sha256
from protocol.spec import JobSpec, parse_spec
from protocol.state_commitment import blob_root
from services.agents.blobs import LocalBlobSource
from services.agents.views import decode_job
from services.errors import DownloadRefusedError
from services.sim.network import JobTerms, Network
from services.strategies.cheaters import PerturbStep
from services.submitter import verified_model
from tests.conftest import tiny_spec_dict

pytestmark = pytest.mark.adversarial

Settled = tuple[Network, dict[str, Any]]
"""The network and the job record of the ``settled`` fixture."""


def _finished(spec: JobSpec, cheat: bool = False) -> Settled:
    net = Network()
    net.add_solver("solver", PerturbStep(step=9) if cheat else None)
    net.add_verifier("verifier")
    net.warm_up()
    job_id = net.post_job(spec, JobTerms(sample_count=8))
    net.run_jobs(job_id, max_rounds=200)
    return net, net.job(job_id)


@pytest.fixture(scope="module")
def settled() -> Settled:
    net, job = _finished(parse_spec(tiny_spec_dict()))
    assert job["status"] == "settled"
    return net, job


class Served:
    """A solver endpoint serving whatever a test says."""

    def __init__(self, leaves: list[bytes] | None, model: bytes | None) -> None:
        self._leaves, self._model = leaves, model

    def leaves(self, solver: str, job_id: str, count: int) -> list[bytes] | None:
        return self._leaves

    def blob(self, solver: str, job_id: str, entry: bytes, max_bytes: int) -> bytes | None:
        return None

    def model(self, solver: str, job_id: str, max_bytes: int) -> bytes | None:
        return self._model if self._model is not None and len(self._model) <= max_bytes else None


def test_a_settled_honest_model_is_verified_end_to_end(settled: Settled) -> None:
    net, job = settled
    model = verified_model(net.blobs, job)
    assert blob_root(model).hex() == job["final_state_hash"]


def test_a_slashed_jobs_model_is_never_handed_over(tiny_spec: JobSpec) -> None:
    net, job = _finished(tiny_spec, cheat=True)
    assert job["status"] == "slashed"
    with pytest.raises(DownloadRefusedError, match="slashed, not settled"):
        verified_model(net.blobs, job)


@pytest.mark.parametrize("status", ["open", "assigned", "committed", "expired", "cancelled"])
def test_an_unsettled_job_is_refused(settled: Settled, status: str) -> None:
    net, job = settled
    with pytest.raises(DownloadRefusedError, match="not settled"):
        verified_model(net.blobs, {**job, "status": status})


def test_a_declared_final_state_that_is_not_the_last_leaf_is_refused(settled: Settled) -> None:
    """The backdoor: the honest root, a declared final hash of another model, that model served."""
    net, job = settled
    leaves = net.blobs.leaves(job["solver"], job["job_id"], int(job["num_leaves"]))
    backdoor = encode_state(init(decode_job(job).spec))
    record = {**job, "final_state_hash": blob_root(backdoor).hex()}
    with pytest.raises(DownloadRefusedError, match="not the committed last leaf"):
        verified_model(Served(leaves, backdoor), record)


def test_a_leaf_list_off_the_committed_root_is_refused(settled: Settled) -> None:
    net, job = settled
    leaves = net.blobs.leaves(job["solver"], job["job_id"], int(job["num_leaves"]))
    assert leaves is not None
    model = net.blobs.model(job["solver"], job["job_id"], 1 << 30)
    forged = [*leaves[:-1], sha256(b"another model")]
    with pytest.raises(DownloadRefusedError, match="committed leaf list"):
        verified_model(Served(forged, model), job)
    with pytest.raises(DownloadRefusedError, match="committed leaf list"):
        verified_model(Served(None, model), job)


def test_a_wrong_or_oversized_model_is_refused(settled: Settled) -> None:
    net, job = settled
    leaves = net.blobs.leaves(job["solver"], job["job_id"], int(job["num_leaves"]))
    model = net.blobs.model(job["solver"], job["job_id"], 1 << 30)
    assert model is not None
    with pytest.raises(DownloadRefusedError, match="does not hash"):
        verified_model(Served(leaves, model[:-1] + bytes([model[-1] ^ 1])), job)
    with pytest.raises(DownloadRefusedError, match="did not serve the model"):
        verified_model(Served(leaves, model + b"\0"), job)  # one byte over the blob size


def test_a_verifier_does_not_vouch_for_a_final_state_off_the_last_leaf(settled: Settled) -> None:
    net, job = settled
    verifier = next(a for a in net.agents if a.role == "verifier")
    verifier.entries.pop(job["job_id"], None)
    assert verifier._final_state_is_last_leaf(decode_job(job))
    other = {**job, "final_state_hash": "ee" * 32}
    assert not verifier._final_state_is_last_leaf(decode_job(other))


def test_the_local_source_applies_the_same_caps(settled: Settled) -> None:
    net, job = settled
    source: LocalBlobSource = net.blobs
    count = int(job["num_leaves"])
    assert source.leaves(job["solver"], job["job_id"], count + 1) is None
    model = source.model(job["solver"], job["job_id"], 1 << 30)
    assert model is not None
    assert source.model(job["solver"], job["job_id"], len(model) - 1) is None

"""untrainable-job: a submitter posts a job the ledger accepts but a solver cannot complete (a
dataset it does not hold, a blob the chain could not carry, more steps a block than it trains).
Before, every solver bid on everything, and the winner lost its stake at the training deadline.
Now a solver checks before it bids and says once why it does not: the job expires unbid, and
nobody is slashed, while the solver's other jobs go on."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from protocol.datasets import check_dataset
from protocol.errors import DatasetError
from protocol.spec import JobSpec, parse_spec
from services.agents import solver as solver_module
from services.agents.views import JobView
from services.sim.network import JobTerms, Network
from tests.agent_views import job_view_for
from tests.conftest import tiny_spec_dict

pytestmark = pytest.mark.adversarial

LACKED = "blobs-f16-c4-n256-s7"  # a dataset the chain knows and this solver is made to lack


def _spec_on(dataset_id: str) -> JobSpec:
    from protocol.datasets import load_dataset

    dataset = {"id": dataset_id, "hash": load_dataset(dataset_id).content_hash_hex}
    return parse_spec(tiny_spec_dict(dataset=dataset))


def _lacking(dataset_id: str, expected_hash: str) -> Any:
    if dataset_id == LACKED:
        raise DatasetError(f"dataset {dataset_id!r} is not held by this solver")
    return check_dataset(dataset_id, expected_hash)


def test_a_job_the_solver_cannot_train_gets_no_bid_and_expires_unpunished(
    monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(solver_module, "check_dataset", _lacking)
    caplog.set_level(logging.INFO, logger="proofnet")
    net = Network()
    solver = net.add_solver("solver")
    net.add_verifier("verifier")
    net.warm_up()
    stake_before = net.client.get_account(solver.address)
    untrainable = net.post_job(_spec_on(LACKED), JobTerms(), submitter="griefer")
    trainable = net.post_job(parse_spec(tiny_spec_dict()), JobTerms(), submitter="alice")

    net.run_jobs(untrainable, trainable, max_rounds=200)

    job = net.job(untrainable)
    assert job["status"] == "expired"
    assert job["bids"] == []
    assert net.job(trainable)["status"] == "settled"
    after = net.client.get_account(solver.address)
    assert int(after["jobs_slashed"]) == 0
    staked = int(after["bonded"]) + int(after["locked"])
    assert staked == int(stake_before["bonded"]) + int(stake_before["locked"])
    said = [r for r in caplog.records if "not bidding on" in r.getMessage()]
    assert len(said) == 1 and untrainable in said[0].getMessage()


def _view(net: Network, spec: JobSpec, **fields: Any) -> JobView:
    return job_view_for(spec, **fields)


def test_the_pre_bid_check_names_each_reason() -> None:
    net = Network()
    solver = net.add_solver("solver", capacity=4)
    spec = parse_spec(tiny_spec_dict())
    assert solver.untrainable(_view(net, spec)) is None

    wrong_hash = parse_spec(tiny_spec_dict(dataset={"id": "synthetic-blobs-v1", "hash": "0" * 64}))
    assert "does not match" in str(solver.untrainable(_view(net, wrong_hash)))

    other_family = dataclasses.replace(spec, model=dataclasses.replace(spec.model, family="rnn"))
    view = dataclasses.replace(_view(net, spec), spec=other_family)
    assert "family" in str(solver.untrainable(view))

    solver._params = dataclasses.replace(solver.params, max_blob_bytes=100)
    assert "max_blob_bytes" in str(solver.untrainable(_view(net, spec)))
    solver._params = None

    # 32 steps in 4 blocks is 8 steps a block; this solver declares 4.
    assert "capacity" in str(solver.untrainable(_view(net, spec, train_blocks=4)))

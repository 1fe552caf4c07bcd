"""untrainable-spec: a submitter posts a job no solver can train (a wrong dataset hash, a model
whose widths do not fit the data, a state too large for the chain, too many leaves) so that the
honest solver that wins it misses its training deadline and is slashed while the submitter is
refunded: griefing for free.

``post_job`` refuses every such spec with ``UntrainableSpecError`` and changes nothing, so no
honest solver can be assigned one. (The solver's own pre-bid checks, for what the ledger cannot
see, are played in ``test_attack_untrainable_job.py``.)
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts_sim.exceptions import UntrainableSpecError
from protocol.datasets import load_dataset
from services.errors import ClientError
from services.sim.network import JobTerms, Network
from services.sim.scenarios import spec_for
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import funded_harness, post_job_body

pytestmark = pytest.mark.adversarial

SHAKESPEARE_HASH = load_dataset("shakespeare-char").content_hash_hex
TINY_TRANSFORMER = {
    "family": "transformer",
    "vocab": 76,
    "context": 8,
    "d_model": 8,
    "heads": 2,
    "layers": 1,
}
BLOBS_V1_HASH = str(tiny_spec_dict()["dataset"]["hash"])  # type: ignore[index]
UNTRAINABLE: dict[str, dict[str, Any]] = {
    "wrong dataset hash": {"dataset": {"id": "synthetic-blobs-v1", "hash": "ab" * 32}},
    "another dataset's hash": {"dataset": {"id": "blobs-f16-c4-n1280-s2", "hash": BLOBS_V1_HASH}},
    "unknown dataset": {"dataset": {"id": "imagenet", "hash": BLOBS_V1_HASH}},
    "dataset too large to check": {"dataset": {"id": "blobs-f64-c4-n9999-s1", "hash": "ab" * 32}},
    "input width": {"model": {"family": "mlp", "input_dim": 15, "hidden": [16], "classes": 4}},
    "class count": {"model": {"family": "mlp", "input_dim": 16, "hidden": [16], "classes": 3}},
    "oversized state": {
        "model": {"family": "mlp", "input_dim": 16, "hidden": [4096], "classes": 4}
    },
    "too many leaves": {"steps": 4_096, "checkpoint_interval": 1},
    "cnn image of another size": {
        "model": {
            "family": "cnn",
            "image": [1, 4, 5],
            "conv": [{"channels": 2, "kernel": 3}],
            "classes": 4,
        }
    },
    "transformer on labelled examples": {"model": TINY_TRANSFORMER},
    "transformer vocabulary": {
        "model": {**TINY_TRANSFORMER, "vocab": 75},
        "dataset": {"id": "shakespeare-char", "hash": SHAKESPEARE_HASH},
    },
}


@pytest.mark.parametrize("case", sorted(UNTRAINABLE))
def test_post_job_refuses_an_untrainable_spec(case: str) -> None:
    h = funded_harness()
    body = post_job_body(spec=tiny_spec_dict(**UNTRAINABLE[case]))
    err = h.expect_error("submitter", "post_job", body, UntrainableSpecError)  # nothing changed
    assert err.code == "untrainable_spec"


def test_no_honest_solver_is_assigned_a_job_with_a_wrong_dataset_hash() -> None:
    net = Network(salt="untrainable-spec")
    solver = net.add_solver("solver")
    net.add_verifier("v1")
    net.warm_up()
    bad = spec_for({"dataset": {"id": "synthetic-blobs-v1", "hash": "ab" * 32}}, seed=3)

    with pytest.raises(ClientError) as refused:
        net.post_job(bad, JobTerms(train_blocks=16))
    assert refused.value.code == "untrainable_spec"

    for _ in range(30):  # far past any bid window and training deadline
        net.round()
    assert net.client.list_jobs() == []
    account = net.client.get_account(solver.address)
    assert int(account["jobs_slashed"]) == 0 and int(account["locked"]) == 0

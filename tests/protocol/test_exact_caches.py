"""A step's result depends on its spec and state only, never on what the process ran before.

Agents and the ledger's referee train and re-run steps of many jobs in one process; every cache
of the exact VM must be keyed by everything its value depends on (red team: a CNN image cache
keyed by the dataset alone trained a second job on the first job's image layout).
"""

from __future__ import annotations

import subprocess
import sys

from protocol.exact import init, state_hash, step
from protocol.spec import JobSpec
from services.sim.scenarios import spec_for


def _cnn(image: list[int]) -> JobSpec:
    return spec_for(
        {
            "model": {
                "family": "cnn",
                "image": image,
                "conv": [{"channels": 2, "kernel": 3, "pool": 2}],
                "classes": 2,
            },
            "dataset": {"id": "blobs-f1024-c2-n100-s1"},
            "steps": 8,
            "checkpoint_interval": 4,
        },
        seed=3,
    )


def _first_step_hash(spec: JobSpec) -> str:
    return state_hash(step(spec, init(spec), 0)).hex()


def _fresh_process_hash(image: list[int]) -> str:
    code = (
        "from tests.protocol.test_exact_caches import _cnn, _first_step_hash;"
        f"print(_first_step_hash(_cnn({image!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip()


def test_a_second_cnn_on_the_same_dataset_trains_as_in_a_fresh_process() -> None:
    _first_step_hash(_cnn([1, 32, 32]))  # warm every cache with one layout
    assert _first_step_hash(_cnn([1, 16, 64])) == _fresh_process_hash([1, 16, 64])

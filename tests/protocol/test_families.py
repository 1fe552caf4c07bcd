"""Every model family and optimizer of the exact VM, end to end (issue 9's acceptance):

* 1, 2 and 3 CPU threads commit identical roots over 200 steps (the real CLI, one process per
  thread count, since torch's thread pool is per process);
* re-executing any segment from its checkpoint reproduces the next leaf;
* an in-process protocol run: the honest solver of a CNN job and of a transformer job is paid,
  and a cheater who perturbs one step is slashed at exactly that step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from protocol.exact import init, run, state_hash
from protocol.spec import JobSpec
from services.sim import scenarios
from tests.adversarial.play import assert_outcome
from tests.conftest import train_in_subprocess

SGD = {"name": "sgd", "lr_log2": -3, "momentum": 0.875}
ADAMW = {"name": "adamw", "lr_log2": -7, "beta1": 0.9, "beta2": 0.99, "weight_decay_log2": -8}
TINY_CNN: dict[str, Any] = {
    "model": {
        "family": "cnn",
        "image": [1, 8, 8],
        "conv": [{"channels": 4, "kernel": 3, "padding": 1, "pool": 2}],
        "hidden": [16],
        "classes": 10,
    },
    "dataset": {"id": "digits"},
}
TINY_TRANSFORMER: dict[str, Any] = {
    "model": {
        "family": "transformer",
        "vocab": 76,
        "context": 8,
        "d_model": 16,
        "heads": 2,
        "layers": 1,
        "ff": 32,
    },
    "dataset": {"id": "shakespeare-char"},
    "batch_size": 4,
}
FAMILIES = {"cnn": TINY_CNN, "transformer": TINY_TRANSFORMER}
OPTIMIZERS = {"sgd": SGD, "adamw": ADAMW}


def tiny(family: str, optimizer: str = "sgd", **overrides: Any) -> dict[str, Any]:
    return {**FAMILIES[family], "optimizer": OPTIMIZERS[optimizer], **overrides}


def _spec(family: str, optimizer: str = "sgd", **overrides: Any) -> JobSpec:
    return scenarios.spec_for(tiny(family, optimizer, **overrides), seed=3)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_two_and_three_threads_commit_identical_roots(
    family: str, optimizer: str, tmp_path: Path
) -> None:
    spec = _spec(family, optimizer, steps=200, checkpoint_interval=20)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()), encoding="utf-8")
    runs = [train_in_subprocess(path, threads, 200) for threads in (1, 2, 3)]
    assert [r["threads"] for r in runs] == [1, 2, 3]
    assert runs[0]["steps"] == 200 and runs[0]["leaves"] == 11
    assert len({r["root"] for r in runs}) == 1
    assert len({r["final_state_hash"] for r in runs}) == 1


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_reexecuting_any_segment_reproduces_its_leaf(family: str, optimizer: str) -> None:
    spec = _spec(family, optimizer)
    interval = spec.checkpoint_interval
    leaves = [init(spec)]
    for segment in range(spec.num_segments):
        leaves.append(run(spec, leaves[-1], segment * interval, (segment + 1) * interval))
    assert len({state_hash(s) for s in leaves}) == len(leaves)  # training moves every segment
    for segment in range(spec.num_segments):
        again = run(spec, dict(leaves[segment]), segment * interval, (segment + 1) * interval)
        assert state_hash(again) == state_hash(leaves[segment + 1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_protocol_honest_solver_is_paid(family: str) -> None:
    result = assert_outcome(scenarios.honest(spec=tiny(family)))
    assert result.passed


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_protocol_perturbing_cheater_is_slashed_at_the_step(family: str) -> None:
    result = assert_outcome(scenarios.perturb_step(13, spec=tiny(family)))
    assert result.first.located_step == 13

"""perturb-step: one low bit flipped right after step s — the smallest lie there is.

Every later segment re-executes honestly from the lie, so only one segment is wrong; with the
whole trajectory sampled it is always found, and the game must locate exactly step s.
"""

from __future__ import annotations

import pytest

from services.sim import scenarios
from services.sim.scenarios import run_scenario
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("step", [0, 1, 3, 4, 15, 16, 19, 30, 31])
def test_every_step_is_located_exactly(step: int) -> None:
    result = assert_outcome(scenarios.perturb_step(step))
    assert result.first.located_step == step


@pytest.mark.parametrize(("step", "bit"), [(5, 3), (22, 12)])
def test_other_bits(step: int, bit: int) -> None:
    assert_outcome(scenarios.perturb_step(step, bit))


@pytest.mark.parametrize("seed", [1, 7, 12345])
def test_other_seeds(seed: int) -> None:
    assert_outcome(scenarios.perturb_step(10, seed=seed))


@pytest.mark.parametrize(
    ("spec", "step"),
    [
        ({"steps": 8, "checkpoint_interval": 1}, 5),  # no bisection: the segment is one step
        ({"steps": 24, "checkpoint_interval": 3}, 13),  # odd intervals
        ({"steps": 24, "checkpoint_interval": 3}, 23),
        ({"steps": 32, "checkpoint_interval": 8}, 21),  # three bisection rounds
        ({"steps": 12, "checkpoint_interval": 12}, 6),  # a single segment
        ({"model": {"family": "mlp", "input_dim": 16, "hidden": [], "classes": 4}}, 9),
    ],
)
def test_other_shapes(spec: dict[str, object], step: int) -> None:
    assert_outcome(scenarios.perturb_step(step, spec=spec))


@pytest.mark.gpu
@pytest.mark.parametrize("step", [0, 16, 31])
def test_cuda_solver_cheat_is_located_by_a_cpu_verifier(step: int) -> None:
    result = run_scenario(scenarios.perturb_step(step), solver_options={"device": "cuda"})
    assert result.passed, result.mismatches
    assert result.first.located_step == step

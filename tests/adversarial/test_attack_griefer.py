"""griefer: challenges every job without checking and disagrees with everything."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_griefer_loses_its_bond(seed: int) -> None:
    assert_outcome(scenarios.griefer(seed=seed))


def test_one_bond_per_job_challenged() -> None:
    result = assert_outcome(scenarios.griefer(jobs=3))
    assert [job.bonds_lost for job in result.jobs] == [{"griefer": 40}] * 3
    assert all(job.status == "settled" for job in result.jobs)


def test_with_a_false_challenger_and_an_honest_verifier() -> None:
    result = assert_outcome(scenarios.scenario_named("griefer+false-challenger+honest"))
    assert result.first.attesters == ["verifier"]

"""The scenario table (``services.sim.scenarios.SCENARIOS``): every catalogue entry, each played to
its expected outcome, and the threat model checked against what the verifiers found."""

from __future__ import annotations

import pytest

from services.sim.scenarios import SCENARIOS, Scenario
from services.sim.threats import SAMPLING, threat_of
from services.strategies import catalogue
from tests.adversarial.play import assert_outcome, play

pytestmark = pytest.mark.adversarial


def test_the_table_covers_the_whole_catalogue() -> None:
    played = {s.solver.cls for s in SCENARIOS} | {v.cls for s in SCENARIOS for v in s.verifiers}
    assert set(catalogue()) <= played
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names))
    assert all(s.deterministic for s in SCENARIOS)
    # Each scenario samples every segment, so no cheat can hide from a checking verifier.
    assert all(s.job_terms().sample_count == s.job_spec().num_segments for s in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(scenario: Scenario) -> None:
    assert_outcome(scenario)


def _sampled_cheats() -> list[Scenario]:
    return [
        s
        for s in SCENARIOS
        if not s.solver.is_honest
        and s.attack != "withhold-data"  # it withholds the leaf list: nothing to count
        and [v.is_honest for v in s.verifiers] == [True]
        and threat_of(s.solver.load(), s.job_spec()).caught == SAMPLING
    ]


@pytest.mark.parametrize("scenario", _sampled_cheats(), ids=lambda s: s.name)
def test_threat_model_counts_the_segments_a_full_sample_finds(scenario: Scenario) -> None:
    (checks,) = play(scenario).checks.values()
    (check,) = checks.values()
    assert sorted(check.sample) == list(range(scenario.job_spec().num_segments))
    found = len(check.bad_segments) + int(check.withheld)  # a fake leaf has no blob behind it
    assert found == threat_of(scenario.solver.load(), scenario.job_spec()).cheated_segments

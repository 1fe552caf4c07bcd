"""Playing scenarios in tests: each one once per session, and one assertion for every outcome."""

from __future__ import annotations

from services.sim.scenarios import Scenario, ScenarioResult, run_scenario

_played: dict[str, ScenarioResult] = {}


def play(scenario: Scenario) -> ScenarioResult:
    """``run_scenario``, memoised by name (the table and the report share their runs)."""
    result = _played.get(scenario.name)
    if result is None or result.scenario != scenario:
        result = _played[scenario.name] = run_scenario(scenario)
    return result


def assert_outcome(scenario: Scenario) -> ScenarioResult:
    """Play ``scenario`` and fail with every difference from its expectation.

    Every run also checks what holds in all scenarios: the jobs finished, the books balance
    (the ledger checked its invariant after every transaction, and the actors' accounts add up
    at the end) and no honest party was slashed or lost a bond.
    """
    result = play(scenario)
    assert result.passed, f"{scenario.name}: {result.mismatches}"
    return result

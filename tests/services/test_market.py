"""The market simulation (services/market.py, ``proofnet market``).

Why: the README's claim that scored assignment beats lowest-price on cheater wins and deadline
misses rests on this model; these tests pin that the model is deterministic for a seed, that
the "scored" policy is the ledger's own ranking (price-only weights reproduce lowest-price
exactly), that the claim holds on the default scenario over several seeds, and that the CLI's
table fits 80 columns and its --json parses.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts_sim.params import BPS, TESTNET
from services.market import (
    LOWEST_PRICE,
    SCORED,
    MarketConfigError,
    compare,
    default_scenario,
    gini,
    objective,
    search_weights,
    seed_range,
    simulate,
    weight_grid,
    with_weights,
)

WIDTH = 80
SMALL = default_scenario(jobs=120)


def test_a_seed_gives_the_same_run_twice_and_another_seed_another() -> None:
    first = simulate(SCORED, SMALL, TESTNET, seed=7)
    assert simulate(SCORED, SMALL, TESTNET, seed=7) == first
    assert simulate(SCORED, SMALL, TESTNET, seed=8) != first


def test_every_job_is_accounted_for() -> None:
    """Each job ends exactly one way: no bid, done, missed, caught or settled unnoticed."""
    for policy in (SCORED, LOWEST_PRICE):
        run = simulate(policy, SMALL, TESTNET, seed=3)
        ends = run.unassigned + run.completed + run.deadline_misses + run.caught + run.undetected
        assert ends == run.jobs == SMALL.jobs
        assert sum(run.wins.values()) == run.jobs - run.unassigned
        # a cheat that misses its deadline anyway counts as a miss
        assert run.cheater_wins >= run.caught + run.undetected


def test_price_only_weights_reproduce_lowest_price() -> None:
    """With all the weight on price the ledger's ranking is lowest-price: the comparison
    isolates the ranking, nothing else differs between the policies."""
    price_only = with_weights(TESTNET, (BPS, 0, 0, 0))
    scored = simulate(SCORED, SMALL, price_only, seed=5)
    lowest = simulate(LOWEST_PRICE, SMALL, price_only, seed=5)
    assert replace(scored, policy=LOWEST_PRICE) == lowest


def test_gini_is_zero_for_equal_shares_and_grows_with_concentration() -> None:
    assert gini([0.5, 0.5, 0.5]) == 0.0
    assert gini([]) == 0.0
    assert gini([0.0, 0.0, 1.0]) == pytest.approx(2 / 3)
    assert gini([0.1, 0.2, 0.9]) < gini([0.0, 0.0, 0.9])


def test_weight_grid_sums_to_one_whole_and_refuses_a_bad_step() -> None:
    grid = weight_grid(1_000)
    assert len(grid) == math.comb(10 + 3, 3)
    assert all(sum(weights) == BPS for weights in grid)
    assert (5_000, 2_000, 1_000, 2_000) in grid
    with pytest.raises(MarketConfigError):
        weight_grid(3_000)
    with pytest.raises(MarketConfigError):
        with_weights(TESTNET, (5_000, 5_000, 1, 0))


def test_bad_configuration_is_a_typed_error() -> None:
    with pytest.raises(MarketConfigError):
        simulate("highest-price", SMALL, TESTNET, seed=0)
    with pytest.raises(MarketConfigError):
        simulate(SCORED, replace(SMALL, jobs=0), TESTNET, seed=0)
    with pytest.raises(MarketConfigError):
        seed_range(0, 0)


@pytest.mark.adversarial
def test_scored_beats_lowest_price_on_cheater_wins_and_misses() -> None:
    """On the default scenario, in every seed and on average: fewer jobs handed to a
    cheater, fewer deadline misses, more jobs done, work spread more evenly."""
    result = compare(default_scenario(jobs=300), TESTNET, seed_range(0, 4))
    by_seed = {(run.policy, run.seed): run for run in result.runs}
    for seed in result.seeds:
        scored, lowest = by_seed[SCORED, seed], by_seed[LOWEST_PRICE, seed]
        assert scored.cheater_wins < lowest.cheater_wins
        assert scored.deadline_misses < lowest.deadline_misses
        assert scored.completed > lowest.completed
    scored_mean, lowest_mean = result.summary(SCORED), result.summary(LOWEST_PRICE)
    assert scored_mean["busy_gini"].mean < lowest_mean["busy_gini"].mean
    assert lowest_mean["busy_min"].mean <= scored_mean["busy_min"].mean


@pytest.mark.adversarial
def test_declaring_free_capacity_cuts_the_scored_policys_misses() -> None:
    """The capacity score reads the declared figure: a solver that declares what its running
    jobs leave free stops winning jobs it has no room for."""
    seeds = seed_range(0, 3)
    full = compare(default_scenario(jobs=300), TESTNET, seeds, policies=(SCORED,))
    free_scenario = replace(default_scenario(jobs=300), declare_free_capacity=True)
    free = compare(free_scenario, TESTNET, seeds, policies=(SCORED,))
    misses = "deadline_misses"
    assert free.summary(SCORED)[misses].mean < full.summary(SCORED)[misses].mean


@pytest.mark.adversarial
def test_weight_search_ranks_by_the_objective() -> None:
    seeds = seed_range(0, 2)
    rows = search_weights(default_scenario(jobs=150), TESTNET, seeds, step=5_000)
    assert len(rows) == len(weight_grid(5_000)) + 1  # and the preset's own weights
    means = [row.objective.mean for row in rows]
    assert means == sorted(means, reverse=True)
    best = with_weights(TESTNET, rows[0].weights)
    runs = [simulate(SCORED, default_scenario(jobs=150), best, seed) for seed in seeds]
    assert rows[0].objective.mean == pytest.approx(sum(map(objective, runs)) / len(runs))


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    import services.cli.market  # noqa: F401  (registers ``market`` on the app, alone)

    return CliRunner(env={"COLUMNS": str(WIDTH), "LINES": "50"})


def test_cli_json_parses_and_holds_both_policies(cli: CliRunner) -> None:
    from services.cli import app

    args = ["market", "simulate", "--jobs", "80", "--seeds", "2", "--seed", "4", "--json"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["seeds"] == [4, 5]
    assert set(data["policies"]) == {SCORED, LOWEST_PRICE}
    assert len(data["runs"]) == 4
    assert data["weights"]["score_weight_price"] == TESTNET.score_weight_price
    assert 0.0 <= data["policies"][SCORED]["completion_rate"]["mean"] <= 1.0


def test_cli_table_fits_80_columns(cli: CliRunner, tmp_path: Path) -> None:
    from services.cli import app

    plot = tmp_path / "market.png"
    args = ["market", "simulate", "--jobs", "80", "--seeds", "2", "--plot", str(plot)]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("cheater wins") for line in lines)
    assert all(len(line) <= WIDTH for line in lines), result.stdout
    assert "…" not in result.stdout
    assert not any(line.endswith(" ") for line in lines)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_grid_table_fits_80_columns(cli: CliRunner) -> None:
    from services.cli import app

    args = ["market", "grid", "--jobs", "60", "--seeds", "1", "--step", "5000", "--top", "3"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= WIDTH for line in lines), result.stdout
    assert "(testnet)" in result.stdout  # the preset's own weights are always shown
    assert not any(line.endswith(" ") for line in lines)


def test_cli_bad_weights_is_one_line_error(cli: CliRunner) -> None:
    from services.cli import app

    result = cli.invoke(app, ["market", "simulate", "--weights", "1,2,3"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "weights" in result.output

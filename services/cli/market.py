"""``proofnet market``: scored bid assignment against lowest-price, in a seeded model.

``simulate`` runs both policies on the same job streams (services/market.py) and prints
one row per metric, mean ± sd over the seeds; ``grid`` runs the scored policy for every
weight vector of a grid and ranks them by the stated objective, the evidence behind the
presets' weights. Both fit 80 columns; ``--json`` prints every number.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from contracts_sim.params import PRESETS, Params, get_preset
from services.cli import app
from services.cli.common import fail, print_json, print_table, progress_bar, reported_errors
from services.market import (
    LOWEST_PRICE,
    METRICS,
    OBJECTIVE,
    POLICIES,
    SCORED,
    GridRow,
    MarketResult,
    Spread,
    compare,
    default_scenario,
    grid_for,
    search_weights,
    seed_range,
    weights_of,
    with_weights,
)

market_app = typer.Typer(
    name="market",
    help="Scored bid assignment against lowest-price, in a seeded market model.",
    no_args_is_help=True,
)
app.add_typer(market_app)

PERCENT_METRICS = {"completion_rate", "busy_max", "busy_min"}
TOKEN_METRICS = {"cost_per_completed", "cost_per_step"}

SeedOpt = Annotated[int, typer.Option("--seed", help="First seed; runs use seed .. seed+K-1.")]
SeedsOpt = Annotated[int, typer.Option("--seeds", min=1, help="K: how many seeds.")]
JobsOpt = Annotated[int, typer.Option("--jobs", min=1, help="Jobs in each seed's stream.")]
PresetOpt = Annotated[str, typer.Option(help=f"Scoring parameters: {', '.join(sorted(PRESETS))}.")]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="Override the score weights: price,stake,capacity,history (bps, sum 10000).",
    ),
]
FreeCapacityOpt = Annotated[
    bool,
    typer.Option(
        "--free-capacity",
        help="Solvers declare their capacity less what their running jobs need "
        "(default: the full figure, as the agents do).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object: every number.")]


def _params(preset: str, weights: str | None) -> Params:
    if preset not in PRESETS:
        fail(f"unknown preset {preset!r} (known: {', '.join(sorted(PRESETS))})")
    params = get_preset(preset)
    if weights is None:
        return params
    try:
        values = [int(part) for part in weights.split(",")]
    except ValueError:
        fail(f"--weights: four integers separated by commas, got {weights!r}")
    with reported_errors():
        return with_weights(params, values)


def say(console: Console, text: str) -> None:
    """Prose wrapped at the terminal's width, no line ending in a space."""
    for line in textwrap.wrap(text, width=console.width):
        console.print(line, highlight=False, soft_wrap=True)


def format_metric(key: str, spread: Spread) -> str:
    """``mean ± sd`` in the metric's unit: percent, tokens or a plain number."""
    if math.isnan(spread.mean):
        return "—"
    if key in PERCENT_METRICS:
        return f"{spread.mean:.1%} ± {spread.sd:.1%}"
    if key == "cost_per_step":
        return f"{spread.mean:,.1f} ± {spread.sd:,.1f}"
    if key in TOKEN_METRICS:
        return f"{spread.mean:,.0f} ± {spread.sd:,.0f}"
    if key in {"busy_gini", "objective"}:
        return f"{spread.mean:.3f} ± {spread.sd:.3f}"
    return f"{spread.mean:.1f} ± {spread.sd:.1f}"


def simulate_rows(result: MarketResult) -> list[list[str]]:
    """One row per metric: its label, then ``mean ± sd`` per policy."""
    summaries = {policy: result.summary(policy) for policy in POLICIES}
    return [
        [label, *(format_metric(key, summaries[policy][key]) for policy in POLICIES)]
        for key, label in METRICS.items()
    ]


def _describe(result: MarketResult, preset: str) -> str:
    scenario = result.scenario
    weights = "/".join(str(w) for w in result.weights.values())
    seeds = result.seeds
    declared = "free" if scenario.declare_free_capacity else "full"
    return (
        f"{len(scenario.solvers)} solvers ({declared} capacity declared), {scenario.jobs} "
        f"jobs a seed at {scenario.load:.0%} load, seeds {seeds[0]}..{seeds[-1]}; {preset} "
        f"weights price/stake/capacity/history {weights}. Mean ± sd over {len(seeds)} seeds."
    )


def plot_result(result: MarketResult, path: Path) -> None:
    """One bar chart per metric, the two policies side by side, sd as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = {policy: result.summary(policy) for policy in POLICIES}
    columns = 3
    rows = -(-len(METRICS) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows))
    colours = {SCORED: "tab:blue", LOWEST_PRICE: "tab:orange"}
    for ax, (key, label) in zip(axes.flat, METRICS.items(), strict=False):
        means = [summaries[policy][key].mean for policy in POLICIES]
        sds = [summaries[policy][key].sd for policy in POLICIES]
        ax.bar(list(POLICIES), means, yerr=sds, capsize=4, color=[colours[p] for p in POLICIES])
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(METRICS) :]:
        ax.axis("off")
    fig.suptitle(f"scored vs lowest-price assignment, {len(result.seeds)} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SIMULATE_HELP = (
    "Run scored and lowest-price assignment on the same seeded job streams.\n\n"
    "Heterogeneous solvers (strong nodes that bid high, weak cheap nodes that overclaim "
    "capacity, two cheaters) share their capacity among their jobs; misses and caught "
    "cheats are slashed and feed the history score. Prints each metric's mean ± sd over "
    "the seeds; --json prints every run, --plot draws a bar chart per metric."
)


@market_app.command("simulate", help=SIMULATE_HELP)
def simulate_command(
    seed: SeedOpt = 0,
    seeds: SeedsOpt = 5,
    jobs: JobsOpt = 400,
    preset: PresetOpt = "testnet",
    weights: WeightsOpt = None,
    free_capacity: FreeCapacityOpt = False,
    json_output: JsonOpt = False,
    plot: Annotated[
        Path | None, typer.Option(help="Draw a bar chart per metric to this PNG file.")
    ] = None,
) -> None:
    """See SIMULATE_HELP."""
    params = _params(preset, weights)
    with reported_errors():
        scenario = replace(default_scenario(jobs), declare_free_capacity=free_capacity)
        result = compare(scenario, params, seed_range(seed, seeds))
    if plot is not None:
        try:
            plot_result(result, plot)
        except OSError as exc:
            fail(f"--plot {plot}: cannot write it ({exc.strerror})")
    if json_output:
        print_json(_finite(result.to_json()))
        return
    console = Console()
    say(console, _describe(result, preset))
    print_table(
        console,
        "market simulation: scored vs lowest-price assignment",
        ["metric", *POLICIES],
        simulate_rows(result),
        numeric=POLICIES,
    )
    if plot is not None:
        say(console, f"plot: {plot}")


def grid_rows(rows: list[GridRow]) -> list[list[str]]:
    return [
        [
            str(rank),
            "/".join(f"{w // 100}" for w in row.weights),
            f"{row.objective.mean:.4f} ± {row.objective.sd:.4f}",
            f"{row.completion_rate:.1%}",
            f"{row.cheater_wins:.1f}",
            f"{row.deadline_misses:.1f}",
            f"{row.cost_per_completed:,.0f}",
        ]
        for rank, row in enumerate(rows, start=1)
    ]


GRID_HELP = (
    "Rank every score-weight vector of a grid by the simulation's objective.\n\n"
    f"Objective: {OBJECTIVE}. Weights are price/stake/capacity/history in percent "
    "(multiples of --step bps, summing to 100%). Prints the best --top rows and the "
    "preset's own; --json prints every row."
)


@market_app.command("grid", help=GRID_HELP)
def grid_command(
    seed: SeedOpt = 0,
    seeds: SeedsOpt = 3,
    jobs: JobsOpt = 400,
    step: Annotated[int, typer.Option(help="Grid step in bps (divides 10000).")] = 1_000,
    min_price_weight: Annotated[
        int,
        typer.Option(
            "--min-price-weight",
            min=0,
            max=10_000,
            help="Leave out vectors whose price weight (bps) is below this.",
        ),
    ] = 0,
    top: Annotated[int, typer.Option(min=1, help="Rows to print.")] = 10,
    preset: PresetOpt = "testnet",
    free_capacity: FreeCapacityOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """See GRID_HELP."""
    params = _params(preset, None)
    with reported_errors():
        seed_list = seed_range(seed, seeds)
        size = len(grid_for(params, step, min_price_weight))
        with progress_bar("grid", size, enabled=not json_output) as advance:
            rows = search_weights(
                replace(default_scenario(jobs), declare_free_capacity=free_capacity),
                params,
                seed_list,
                step,
                min_price_weight,
                progress=lambda done, _total: advance(done),
            )
    current = tuple(weights_of(params).values())
    preset_rows = [(i, r) for i, r in enumerate(rows, start=1) if r.weights == current]
    if json_output:
        print_json(
            _finite(
                {
                    "objective": OBJECTIVE,
                    "seeds": list(seed_list),
                    "jobs": jobs,
                    "step": step,
                    "min_price_weight": min_price_weight,
                    "free_capacity": free_capacity,
                    "preset": preset,
                    "preset_rank": preset_rows[0][0] if preset_rows else None,
                    "rows": [row.to_json() for row in rows],
                }
            )
        )
        return
    _print_grid(rows, top, preset, preset_rows, len(seed_list))


def _print_grid(
    rows: list[GridRow],
    top: int,
    preset: str,
    preset_rows: list[tuple[int, GridRow]],
    seeds: int,
) -> None:
    console = Console()
    say(console, f"objective: {OBJECTIVE}; {seeds} seeds.")
    shown = grid_rows(rows)[:top]
    if preset_rows and preset_rows[0][0] > top:
        rank, row = preset_rows[0]
        shown.append(grid_rows([row])[0])
        shown[-1][0] = f"{rank} ({preset})"
    elif preset_rows:
        shown[preset_rows[0][0] - 1][0] += f" ({preset})"
    print_table(
        console,
        f"score weights ranked ({len(rows)} vectors)",
        ["rank", "p/s/c/h %", "objective", "done", "cheat", "missed", "price/job"],
        shown,
        numeric=("objective", "done", "cheat", "missed", "price/job"),
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN: a metric with nothing to average becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value

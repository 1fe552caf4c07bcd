"""``proofnet economics``: does any catalogue cheat pay on this job?
(docs/protocol.md, "Economics")

The threat model reads the strategy catalogue, which imports the exact VM (torch): it is
imported when the command runs, not when the CLI registers its commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from contracts_sim.params import PRESETS, Params, get_preset
from protocol import economics as econ
from protocol.spec import JobSpec
from services.cli import app
from services.cli.common import fail, print_json, reported_errors
from services.jobspec import load_spec

if TYPE_CHECKING:
    from services.sim.deterrence import DeterrenceRow, JobEconomics


def _fmt_p(p: float) -> str:
    return "1" if p == 1 else "0" if p == 0 else f"{p:.4f}"


def _fmt_opt(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def economics_json(
    spec: JobSpec, job: JobEconomics, preset: str, rows: list[DeterrenceRow]
) -> dict[str, Any]:
    return {
        "preset": preset,
        "job": {
            "steps": job.steps,
            "checkpoint_interval": job.checkpoint_interval,
            "segments": job.segments,
            "payment": job.payment,
            "verification_fee": job.verification_fee,
            "stake": job.stake,
            "sample_count": job.sample_count,
            "verifiers": job.verifiers,
            "challenge_bond": job.challenge_bond,
            "slash_reward_bps": job.slash_reward_bps,
            "loss_with_accomplice": job.loss_with_accomplice,
            "verifier_cost_fraction": job.verifier_cost_fraction,
            "verifiers_cost_fraction": job.verifiers * job.verifier_cost_fraction,
        },
        "rows": [row.to_json() for row in rows],
        "lazy_verifier_expected_profit": lazy_expected_profit(rows),
        "all_deterred": all(row.deterred for row in rows if row.caught != "undetected"),
    }


# (header, justify, wide only): the default table keeps what decides deterrence and what would
# fix it, and fits 80 columns; --wide adds the role, how a cheat is caught, c and s.
_COLUMNS: list[tuple[str, str, bool]] = [
    ("cheat", "left", False),
    ("role", "left", True),
    ("caught", "left", True),
    ("c", "right", True),
    ("s", "right", True),
    ("P(detect)", "right", False),
    ("E\\[loss]", "right", False),  # escaped: rich would read [loss] as markup
    ("saved", "right", False),
    ("deterred", "center", False),
    ("min k", "right", False),
    ("min stake", "right", False),
]


def _row_cells(row: DeterrenceRow) -> list[str]:
    """One table row, in the order of _COLUMNS."""
    return [
        row.cheat,
        row.role,
        row.caught,
        _fmt_opt(row.cheated_segments),
        f"{row.saved_fraction:.3f}",
        _fmt_p(row.detection),
        f"{row.expected_loss:,.0f}",
        f"{row.work_saved:,}",
        "[green]yes[/]" if row.deterred else "[red]no[/]",
        _fmt_opt(row.min_sample_count),
        _fmt_opt(row.min_stake),
    ]


def deterrence_rich_table(rows: list[DeterrenceRow], wide: bool = False) -> Table:
    """The deterrence table. Compact by default (no borders between columns, one space of
    padding), so that it fits 80 columns; a cell too long for the terminal folds onto a second
    line rather than being cut with an ellipsis. Rows are grouped by role, a rule between."""
    table = Table(
        title="deterrence: P(detect) · loss with accomplice > s · payment",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    shown = [i for i, (_, _, wide_only) in enumerate(_COLUMNS) if wide or not wide_only]
    for i in shown:
        name, justify, _ = _COLUMNS[i]
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    previous_role = None
    for row in rows:
        if not wide and previous_role is not None and row.role != previous_role:
            table.add_section()
        previous_role = row.role
        cells = _row_cells(row)
        table.add_row(*(cells[i] for i in shown))
    return table


def lazy_expected_profit(rows: list[DeterrenceRow]) -> float | None:
    """A lazy verifier's expected profit per job under forced errors, F - ρ·(B + F): its fee
    share less the expected forfeit (None: forced errors are off on this preset)."""
    lazy = next((r for r in rows if r.caught == "forced errors"), None)
    return None if lazy is None else round(lazy.work_saved - lazy.expected_loss, 2)


def print_table(
    job: JobEconomics, preset: str, rows: list[DeterrenceRow], wide: bool = False
) -> None:
    """The job's economics as prose and a table, at the terminal's width (80 when piped)."""
    console = Console()
    console.print(
        f"[bold]job[/]: {job.steps} steps, C = {job.checkpoint_interval}, m = {job.segments} "
        f"segments; payment {job.payment:,}, stake {job.stake:,} ({preset} preset), "
        f"k = {job.sample_count} per verifier, V = {job.verifiers}"
    )
    console.print(
        f"[bold]verifier cost[/]: {job.verifier_cost_fraction:.1%} of the solver's work per "
        f"verifier ({job.verifiers * job.verifier_cost_fraction:.1%} for all {job.verifiers})"
    )
    reward = job.stake - job.loss_with_accomplice
    console.print(
        f"[bold]loss with accomplice[/]: stake {job.stake:,} − reward {reward:,} "
        f"({job.slash_reward_bps / 100:g}%) = {job.loss_with_accomplice:,} (worst case: the "
        "cheater's own challenger collects the reward)"
    )
    profit = lazy_expected_profit(rows)
    if profit is not None:
        console.print(
            f"[bold]lazy verifier[/]: expected profit {profit:,.0f} a job (its fee share less "
            f"the chance its sample holds a forced error times its bond and share; attestation "
            f"bond {job.attest_bond:,})"
        )
    console.print(deterrence_rich_table(rows, wide))
    roles = ", ".join(dict.fromkeys(f"{row.role} cheats" for row in rows))
    legend = (
        "E\\[loss]: P(detect) · loss with accomplice (the stake or bond less the reward); "
        "saved: the payment share of the work skipped; min k / min stake: the smallest sample "
        "count (at this stake) / stake (at this k) that deters it."
    )
    if job.attest_bond:
        legend += (
            f" lazy-verifier: P(detect) is the chance its sample holds a forced error, E[loss] "
            f"its attestation bond ({job.attest_bond:,}) and fee share at that chance, saved "
            "the fee share it earns without re-executing."
        ).replace("E[loss]", "E\\[loss]")
    if wide:
        legend = "c: segments the cheat corrupts; s: share of the work it saves; " + legend
    else:
        legend = f"Rows: {roles}. " + legend + " --wide: role, caught, c, s; --json: all."
    console.print(legend, highlight=False)


def plot_deterrence(job: JobEconomics, rows: list[DeterrenceRow], path: Path) -> None:
    """P(detect) against the share of segments cheated, for several k; and the stake needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from services.sim.deterrence import detection_curve

    m, v = job.segments, job.verifiers
    ks = sorted({1, 2, job.sample_count, max(1, m // 4), max(1, m // 2), m})
    curves = detection_curve(m, ks, v)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for k, points in curves.items():
        style = "-" if k == job.sample_count else "--"
        label = f"k = {k}" + (" (this job)" if k == job.sample_count else "")
        left.plot([x for x, _ in points], [p for _, p in points], style, marker=".", label=label)
    cheats: dict[tuple[float, float], list[str]] = {}
    for row in rows:
        if row.cheated_segments is not None:
            cheats.setdefault((row.cheated_segments / m, row.detection), []).append(row.cheat)
    for (x, p), names in sorted(cheats.items()):
        left.plot(x, p, "k^", markersize=5)
        right_side = x > 0.75
        left.annotate(
            "\n".join(names),
            (x, p),
            fontsize=6.5,
            xytext=(-5 if right_side else 5, -5),
            textcoords="offset points",
            ha="right" if right_side else "left",
            va="top",
        )
    left.set_xlabel("fraction of segments cheated  φ = c / m")
    left.set_ylabel(f"P(detect), V = {v}")
    left.set_title(f"detection, m = {m} segments")
    left.set_ylim(0, 1.05)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)

    # A cheat that skips the work of the segments it corrupts saves s = φ.
    for k in ks:
        xs, ys = [], []
        for c in range(1, m + 1):
            need = econ.min_stake(m, c, k, v, job.payment, c / m, job.slash_reward_bps)
            if need is not None:
                xs.append(c / m)
                ys.append(need)
        right.plot(xs, ys, "-" if k == job.sample_count else "--", marker=".", label=f"k = {k}")
    right.axhline(job.stake, color="red", linewidth=1, label=f"this job's stake {job.stake:,}")
    right.axhline(job.payment, color="grey", linewidth=0.8, linestyle=":", label="payment")
    right.set_yscale("log")
    right.set_xlabel("fraction of segments cheated (and of the work skipped)")
    right.set_ylabel("stake needed to deter")
    right.set_title("stake that makes skipping work unprofitable")
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_job(spec_file: Path, preset: str, verifiers: int) -> tuple[JobSpec, JobEconomics]:
    from services.sim.deterrence import JobEconomics

    spec, terms = load_spec(spec_file)
    params: Params = get_preset(preset)
    return spec, JobEconomics.from_terms(spec, terms, params, verifiers)


# One string per paragraph: rich help keeps a docstring's line breaks, mid-sentence.
ECONOMICS_HELP = (
    "Does any catalogue cheat pay on this job? Deterrence per cheat, at 80 columns.\n\n"
    "For each cheat: P(detect), the expected loss against the work it saves, deterred or "
    "not, and the smallest k and stake that deter it; plus the verifiers' cost. --wide shows "
    "every column, --json every number."
)


@app.command(help=ECONOMICS_HELP)
def economics(
    spec_file: Annotated[Path, typer.Argument(help="Job spec (YAML or JSON) with 'terms:'.")],
    preset: Annotated[
        str, typer.Option(help=f"Chain parameters: {', '.join(sorted(PRESETS))}.")
    ] = "testnet",
    verifiers: Annotated[
        int, typer.Option(min=1, help="Independent verifiers sampling the job.")
    ] = 1,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: every number.")
    ] = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="Every column (role, caught, c, s): > 80 columns.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Draw the deterrence curve to this PNG file.")
    ] = None,
) -> None:
    """Print (or --json) the deterrence table of a job spec: see ECONOMICS_HELP."""
    if preset not in PRESETS:
        fail(f"unknown preset {preset!r} (known: {', '.join(sorted(PRESETS))})")
    from services.sim.deterrence import deterrence_table

    with reported_errors():
        spec, job = load_job(spec_file, preset, verifiers)
    rows = deterrence_table(spec, job)
    if plot is not None:
        plot_deterrence(job, rows, plot)
    if json_output:
        document = economics_json(spec, job, preset, rows)
        if plot is not None:
            document["plot"] = str(plot)
        print_json(document)
    else:
        print_table(job, preset, rows, wide)
        if plot is not None:
            Console(stderr=True).print(f"deterrence curve written to {plot}")

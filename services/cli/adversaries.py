"""``proofnet adversaries report``: play the scenario table and the statistics, write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli import app
from services.cli.common import progress_bar, stderr

adversaries_app = typer.Typer(
    help="The adversarial suite: cheating solvers and verifiers played against the protocol.",
    no_args_is_help=True,
)
app.add_typer(adversaries_app, name="adversaries")

EXAMPLE_SPEC = Path("examples/digits-mlp.yaml")


@adversaries_app.command("report")
def report(
    out: Annotated[Path, typer.Option(help="Where to write the markdown report.")] = Path(
        "docs/adversaries.md"
    ),
    trials: Annotated[
        int, typer.Option(min=10, help="Seeded trials for the detection-rate statistics.")
    ] = 50,
    spec: Annotated[
        Path, typer.Option(help="Job spec whose economics the report prices.")
    ] = EXAMPLE_SPEC,
    preset: Annotated[str, typer.Option(help="Chain preset for the economics.")] = "testnet",
) -> None:
    """Play every scenario of the table and the detection statistics; write the report."""
    from services.adversary_report import ReportInputs, render
    from services.cli.economics import load_job
    from services.detection import CONFIGS, run_detection_trials
    from services.deterrence import deterrence_table
    from services.scenarios import SCENARIOS, run_scenario

    results = []
    with progress_bar("scenarios", len(SCENARIOS)) as advance:
        for i, scenario in enumerate(SCENARIOS):
            results.append(run_scenario(scenario))
            advance(i + 1)
    stats = []
    for config in CONFIGS:
        stderr.print(f"detection statistics: {trials} trials of {config} …")
        stats.append(run_detection_trials(trials, **config))
    economics_spec, job = load_job(spec, preset, 1)
    command = "proofnet adversaries report" + (f" --trials {trials}" if trials != 50 else "")
    text = render(
        ReportInputs(
            results=results,
            stats=stats,
            economics_spec=str(spec),
            economics_preset=preset,
            job=job,
            deterrence=deterrence_table(economics_spec, job),
            command=command,
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    failed = [r.scenario.name for r in results if not r.passed]
    stderr.print(f"wrote {out}: {len(results) - len(failed)}/{len(results)} scenarios as expected")
    for s in stats:
        stderr.print(
            f"detection (c = {s.cheated}, k = {s.sample_count}, V = {s.verifiers}): "
            f"{s.detected}/{s.trials}, theory {s.theoretical:.3f}, "
            f"{'inside' if s.within else 'OUTSIDE'} the 99% region"
        )
    problems = [p for s in stats for p in s.failures] + [
        f"c = {s.cheated}, V = {s.verifiers}: outside the 99% region" for s in stats if not s.within
    ]
    if failed or problems:
        stderr.print(f"[bold red]unexpected:[/] {failed} {problems[:5]}")
        raise typer.Exit(1)

"""``proofnet adversaries report``: play the scenario table and the statistics, print the report.

The markdown goes to stdout unless ``--output FILE`` names a file: running the command with
its defaults never overwrites the tracked ``docs/adversaries.md``. The report records the
number of detection trials it was made with; regenerating a file that records one reuses it
unless ``--trials`` is given, so a quick run cannot silently replace a 200-trial measurement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli import app
from services.cli.common import progress_bar, reported_errors, resolve_spec_path, stderr

adversaries_app = typer.Typer(
    help="The adversarial suite: cheating solvers and verifiers played against the protocol.",
    no_args_is_help=True,
)
app.add_typer(adversaries_app, name="adversaries")

EXAMPLE_SPEC = Path("examples/digits-mlp.yaml")
DEFAULT_TRIALS = 50


def _trials_for(requested: int | None, output: Path | None) -> int:
    """``--trials`` if given; else the count the existing ``--output`` file was made with;
    else DEFAULT_TRIALS."""
    from services.sim.report import recorded_trials

    if requested is not None:
        return requested
    if output is not None and output.is_file():
        recorded = recorded_trials(output.read_text(encoding="utf-8"))
        if recorded is not None:
            stderr.print(f"{output} was made with {recorded} trials: using {recorded} again")
            return recorded
    return DEFAULT_TRIALS


REPORT_HELP = (
    "Play every scenario of the table and the detection statistics; print the report.\n\n"
    "The tracked report is regenerated with 'proofnet adversaries report --output "
    "docs/adversaries.md': it keeps the trial count recorded in that file."
)


@adversaries_app.command("report", help=REPORT_HELP)
def report(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "--out",
            "-o",
            help="Write the markdown report to this file (default: stdout).",
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            min=10,
            show_default=False,
            help="Seeded trials per detection configuration (default: the count the "
            f"--output file records, else {DEFAULT_TRIALS}).",
        ),
    ] = None,
    spec: Annotated[
        Path, typer.Option(help="Job spec whose economics the report prices.")
    ] = EXAMPLE_SPEC,
    preset: Annotated[str, typer.Option(help="Chain preset for the economics.")] = "testnet",
) -> None:
    """Play the scenarios and the statistics; see REPORT_HELP."""
    from services.cli.economics import load_job
    from services.sim.detection import CONFIGS, run_detection_trials
    from services.sim.deterrence import deterrence_table
    from services.sim.report import ReportInputs, render
    from services.sim.scenarios import SCENARIOS, run_scenario

    with reported_errors():
        spec_path = resolve_spec_path(spec)
        count = _trials_for(trials, output)
        economics_spec, job = load_job(spec_path, preset, 1)
    results = []
    with progress_bar("scenarios", len(SCENARIOS)) as advance:
        for i, scenario in enumerate(SCENARIOS):
            results.append(run_scenario(scenario))
            advance(i + 1)
    stats = []
    for config in CONFIGS:
        stderr.print(f"detection statistics: {count} trials of {config} …")
        stats.append(run_detection_trials(count, **config))
    text = render(
        ReportInputs(
            results=results,
            stats=stats,
            economics_spec=str(spec),
            economics_preset=preset,
            job=job,
            deterrence=deterrence_table(economics_spec, job),
            command=f"proofnet adversaries report --trials {count}",
            trials=count,
        )
    )
    failed = [r.scenario.name for r in results if not r.passed]
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        stderr.print(f"wrote {output}")
    stderr.print(f"{len(results) - len(failed)}/{len(results)} scenarios as expected")
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

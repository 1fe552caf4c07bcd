"""``docs/adversaries.md``: what the adversarial suite measured, rendered as markdown.

The report is generated (``proofnet adversaries report``), never written by hand. Its scenario
table has one row per entry of ``services.sim.scenarios.SCENARIOS``; every cell of a deterministic
row is a pure function of the run (no timings), so ``tests/adversarial`` re-plays the table and
checks that the committed file still says what the suite measures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from contracts_sim.records import JobStatus
from protocol.economics import detection_with_verifiers
from services.sim.detection import DetectionStats
from services.sim.deterrence import DeterrenceRow, JobEconomics
from services.sim.scenarios import (
    ANY,
    CONSISTENCY,
    INVALID_PRESTATE,
    LEAF_ZERO,
    NONE,
    ONE_STEP,
    Scenario,
    ScenarioResult,
)
from services.sim.threats import LEDGER, SAMPLING, threat_of
from services.strategies.verifiers import LazyVerifier

TABLE_HEADER = (
    "| scenario | attack | actors | caught by | P(detect) theory | measured | located step "
    "| slashed | bonds lost | outcome |"
)
TABLE_RULE = "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
TRIALS_LINE = "Detection statistics: **{trials} seeded trials** per configuration."
_TRIALS = re.compile(r"Detection statistics: \*\*(\d+) seeded trials\*\*|--trials (\d+)`")


def recorded_trials(text: str) -> int | None:
    """The trial count a rendered report says it was made with (its header), if any.

    Reports from before the header line name it only in the command (``--trials N``)."""
    match = _TRIALS.search(text)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def theoretical_detection(scenario: Scenario) -> str:
    """P(detect) for the scenario's sample, from its threat model ('—' for honest play)."""
    solver = scenario.solver
    if solver.is_honest:
        cheats = [ref for ref in scenario.verifiers if not ref.is_honest]
        if not cheats:
            return "—"
        # A cheating challenger loses its bond to the referee or a deadline for certain; a lazy
        # attestation is never seen.
        return "0" if all(ref.cls is LazyVerifier for ref in cheats) else "1"
    threat = threat_of(solver.load(), scenario.job_spec())
    if threat.caught == LEDGER:
        return "1"
    assert threat.caught == SAMPLING and threat.cheated_segments is not None
    checking = sum(1 for ref in scenario.verifiers if ref.is_honest)
    p = detection_with_verifiers(
        scenario.job_spec().num_segments,
        threat.cheated_segments,
        scenario.job_terms().sample_count,
        checking,
    )
    return _fmt_rate(p)


def _fmt_rate(p: float) -> str:
    return "1" if p == 1 else "0" if p == 0 else f"{p:.3f}"


def _caught(result: ScenarioResult) -> str:
    return " / ".join(sorted({job.caught_by for job in result.jobs}))


def _measured(result: ScenarioResult) -> str:
    """Games in which the cheat was caught, out of the games played ('—' for honest play)."""
    scenario = result.scenario
    if not scenario.solver.is_honest:
        caught = sum(job.solver_slashed for job in result.jobs)
    elif any(not ref.is_honest for ref in scenario.verifiers):
        caught = sum(bool(job.bonds_lost) for job in result.jobs)
    else:
        return "—"
    return f"{caught}/{len(result.jobs)}"


def _located(result: ScenarioResult) -> str:
    steps = [job.located_step for job in result.jobs]
    shown = ", ".join("—" if s is None else str(s) for s in steps)
    expected = result.scenario.expected.located_step
    return f"{shown} (any)" if expected == ANY else shown


def _slashed(result: ScenarioResult) -> str:
    hit = [job for job in result.jobs if job.solver_slashed]
    if not hit:
        return "—"
    job = hit[0]
    text = f"{job.slashed} ({job.slash_reward} reward, {job.slash_burned} burned)"
    return text if len(hit) == 1 else f"{len(hit)} × {text}"


def _bonds(result: ScenarioResult) -> str:
    lost: dict[str, int] = {}
    for job in result.jobs:
        for actor, amount in job.bonds_lost.items():
            lost[actor] = lost.get(actor, 0) + amount
    return ", ".join(f"{a} {n}" for a, n in sorted(lost.items())) or "—"


def _outcome(result: ScenarioResult) -> str:
    statuses = sorted({job.status for job in result.jobs})
    text = "/".join(statuses)
    if JobStatus.SETTLED in statuses and not result.scenario.solver.is_honest:
        text += ", cheater paid"
    return text + ("" if result.passed else " — **UNEXPECTED**")


def _actors(scenario: Scenario) -> str:
    verifiers = ", ".join(ref.label() for ref in scenario.verifiers)
    jobs = f"; {scenario.jobs} jobs" if scenario.jobs > 1 else ""
    return f"{scenario.solver.label()} vs {verifiers}{jobs}"


def scenario_row(result: ScenarioResult) -> str:
    """The markdown row of one scenario: a pure function of the run."""
    scenario = result.scenario
    cells = [
        f"`{scenario.name}`",
        scenario.attack,
        _actors(scenario),
        _caught(result),
        theoretical_detection(scenario),
        _measured(result),
        _located(result),
        _slashed(result),
        _bonds(result),
        _outcome(result),
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def table_rows(text: str) -> list[str]:
    """The scenario rows of a rendered report (the lines of its first table body)."""
    lines = text.splitlines()
    try:
        start = lines.index(TABLE_HEADER) + 2
    except ValueError:
        return []
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


@dataclass(frozen=True)
class ReportInputs:
    results: Sequence[ScenarioResult]
    stats: Sequence[DetectionStats]
    economics_spec: str
    economics_preset: str
    job: JobEconomics
    deterrence: Sequence[DeterrenceRow]
    command: str
    trials: int


LEGEND = f"""\
How a game is decided (*caught by*):

- **{ONE_STEP}** — the dispute narrowed the disagreement to one step s (Merkle descent, then
  bisection); the referee re-ran step s from the agreed pre-state and compared the hash with
  the solver's claim. The *located step* is s.
- **{LEAF_ZERO}** — the descent reached leaf 0; the referee recomputed the initial state.
- **{INVALID_PRESTATE}** — the agreed pre-state blob is not a state of the job.
- **⟨phase⟩ deadline** — the party whose move it was let `move_timeout` blocks pass; anyone
  claimed the timeout and that party lost (this is how withheld data and stalling are punished).
- **{CONSISTENCY}** — the ledger refused a progress/final root that does not extend the last
  one, or whose leaf 0 is not the spec's initial state, so the solver could never commit; its
  training deadline then slashed it.
- **{NONE}** — nobody lost anything.

*P(detect) theory* is 1 − (C(m − c, k) / C(m, k))^V for the scenario's sample (k = m here, so 1
for every cheat a checking verifier can see), with c from `services/sim/threats.py` and V the
verifiers that re-execute; 1 for ledger rules and for cheating challengers (their bond is lost
for certain). *Measured* counts the games in which the cheat was caught. Slashed amounts: the
solver's locked stake, half shared by the challengers of every dispute then open and half
burned (`slash_reward_bps` = 5000 in the `test` preset); a challenger's bond: half to the
solver, half burned."""


def detection_section(all_stats: Sequence[DetectionStats]) -> list[str]:
    lines = [
        "An adaptive cheater flips one bit at the last step of c of the m = 8 segments (16 steps, "
        "C = 2) and is honest elsewhere; V honest verifiers sample k segments each. Each trial "
        "is a different job seed (so different cheated segments, root, samples and keys). "
        "Theory: 1 − (C(m − c, k) / C(m, k))^V.",
        "",
        "| m | c | k | V | trials | detected | measured | theory | exact 99% region "
        "| Wilson 99% interval | inside | located first tampered step | missed and paid "
        "| other outcomes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for stats in all_stats:
        located = sum(t.located_step == t.first_tampered_step for t in stats.records if t.detected)
        paid = sum(t.status == JobStatus.SETTLED for t in stats.records if not t.detected)
        lines.append(
            f"| {stats.segments} | {stats.cheated} | {stats.sample_count} | {stats.verifiers} "
            f"| {stats.trials} | {stats.detected} | {stats.measured:.3f} "
            f"| {stats.theoretical:.3f} | {stats.acceptance[0]}–{stats.acceptance[1]} "
            f"| [{stats.wilson[0]:.3f}, {stats.wilson[1]:.3f}] "
            f"| {'yes' if stats.within else 'NO'} | {located} of {stats.detected} "
            f"| {paid} of {stats.trials - stats.detected} | {len(stats.failures)} |"
        )
    lines += [
        "",
        "A detected cheat is located at its *first* tampered step, whichever cheated segment "
        "the sample met: the verifier re-executes from the start once it sees a mismatch (on "
        "jobs where that would cost more than a few times its sample it challenges the sampled "
        "segment itself, which locates a tampered step of that segment). A missed one settles "
        "and the cheater is paid — that is the rate measured.",
        "",
    ]
    return lines


def render(inputs: ReportInputs) -> str:
    failed = [r for r in inputs.results if not r.passed]
    honest_losses = sum(len(r.honest_losses) for r in inputs.results)
    unbalanced = sum(not r.supply_ok for r in inputs.results)
    lines = [
        "# Adversaries: what ProofNet was attacked with, and what happened",
        "",
        f"Generated by `{inputs.command}` — do not edit by hand; a test checks that the "
        "deterministic rows below still match what the suite measures. "
        + TRIALS_LINE.format(trials=inputs.trials),
        "",
        "Every scenario is played in-process (`services/sim/scenarios/`): the in-memory ledger "
        "with its supply invariant checked after every transaction, real solver and verifier "
        "agents, a virtual clock. Job: a 16-16-4 MLP on synthetic blobs, 32 steps, C = 4 "
        "(m = 8 segments), payment 1000, stake 200, bond 40 (`test` preset), every segment "
        "sampled unless stated. More knob values per attack: `tests/adversarial/test_attack_*.py`.",
        "",
        f"**{len(inputs.results) - len(failed)} of {len(inputs.results)} scenarios** reached "
        f"their expected outcome; honest parties slashed or losing a bond: {honest_losses}; "
        f"runs whose books did not balance: {unbalanced}.",
        "",
        "## Scenarios",
        "",
        TABLE_HEADER,
        TABLE_RULE,
        *(scenario_row(result) for result in inputs.results),
        "",
        LEGEND,
        "",
        "## Detection rate under partial sampling",
        "",
        *detection_section(inputs.stats),
        "## Economics of the example job",
        "",
        f"`proofnet economics {inputs.economics_spec} --preset {inputs.economics_preset}`: "
        f"{inputs.job.steps} steps, C = {inputs.job.checkpoint_interval}, m = "
        f"{inputs.job.segments}; payment {inputs.job.payment:,}, stake {inputs.job.stake:,}, "
        f"k = {inputs.job.sample_count}, V = {inputs.job.verifiers}. A verifier re-executes "
        f"{inputs.job.verifier_cost_fraction:.1%} of the solver's work. Worst case priced: "
        f"an accomplice challenger collects the reward ({inputs.job.slash_reward_bps / 100:g}%"
        f" of the stake), so a caught cheater loses {inputs.job.loss_with_accomplice:,}; "
        "E[loss] = P(detect) · that loss (for a cheating challenger: its bond less the "
        "solver's reward).",
        "",
        "| cheat | role | caught | c | s | P(detect) | E[loss] | saved | deterred | min k "
        "| min stake |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in inputs.deterrence:
        lines.append(
            f"| {row.cheat} | {row.role} | {row.caught} "
            f"| {'—' if row.cheated_segments is None else row.cheated_segments} "
            f"| {row.saved_fraction:.3f} | {_fmt_rate(row.detection)} "
            f"| {row.expected_loss:,.0f} | {row.work_saved:,} "
            f"| {'yes' if row.deterred else '**no**'} "
            f"| {'—' if row.min_sample_count is None else row.min_sample_count} "
            f"| {'—' if row.min_stake is None else f'{row.min_stake:,}'} |"
        )
    lines += [
        "",
        "The lazy verifier is priced by forced errors (`protocol.forced_errors`): on one job "
        "nothing it does shows, and one honest verifier among the V is enough to catch a cheat "
        "(`lazy-verifier+honest` above); across jobs, whenever its sample holds a forced error "
        "it vouched for, the solver audits it and it forfeits its attestation bond and fee "
        "share, so its expected profit is negative "
        "(`tests/adversarial/test_attack_lazy_verifier.py`, 200 jobs on the ledger).",
        "",
    ]
    return "\n".join(lines)

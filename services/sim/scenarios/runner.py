"""Playing a scenario: ``run_scenario`` on a fresh in-process ``Network``, and the outcome of
each job read back from the ledger (what decided it, who lost what)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from contracts_sim.blocks import Receipt
from contracts_sim.invariants import check_invariant
from contracts_sim.records import Party, Resolution
from contracts_sim.transactions import Transaction
from protocol.errors import ProofNetError
from services.agents.strategy import (
    SolverStrategy,
    VerifierStrategy,
)
from services.agents.verifier import VerifierAgent
from services.agents.views import (
    BondForfeited,
    DisputeResolved,
    JobSettled,
    Slashed,
    decode_account,
    decode_job,
    decode_job_detail,
)
from services.client import LocalChainClient, TxLike
from services.sim.network import Network
from services.sim.scenarios.model import (
    CONSISTENCY,
    INVALID_PRESTATE,
    LEAF_ZERO,
    NONE,
    ONE_STEP,
    TRAINING_DEADLINE,
    JobOutcome,
    Rejection,
    Scenario,
    ScenarioResult,
    deadline,
)

# --- running --------------------------------------------------------------------------------


class RecordingClient(LocalChainClient):
    """The in-process client, remembering every transaction the ledger refuses."""

    def __init__(self, network: Network) -> None:
        super().__init__(network.chain, automine=False)
        self.refused: list[tuple[str, str, str, str]] = []  # (sender, kind, code, message)

    def submit(self, tx: TxLike, wait: bool = False) -> Receipt:
        try:
            return super().submit(tx, wait)
        except ProofNetError as exc:
            parsed = tx if isinstance(tx, Transaction) else None
            sender = str(parsed.sender) if parsed else str(tx.get("sender", ""))  # type: ignore[union-attr]
            kind = parsed.kind if parsed else str(tx.get("kind", ""))  # type: ignore[union-attr]
            self.refused.append((sender, kind, exc.code, exc.message))
            raise


_CAUGHT_BY: dict[Resolution, str] = {
    Resolution.ONE_STEP: ONE_STEP,
    Resolution.LEAF_ZERO: LEAF_ZERO,
    Resolution.INVALID_PRESTATE: INVALID_PRESTATE,
}


def classify(resolution: Resolution | str, refused_commit: bool = False) -> str:
    """What decided the game, from the ``resolution`` the ledger records on a dispute
    resolution or a slash (``contracts_sim.records.Resolution``)."""
    decided = Resolution(resolution)
    if decided is Resolution.TRAINING_TIMEOUT:
        return CONSISTENCY if refused_commit else TRAINING_DEADLINE
    phase = decided.timed_out_phase
    if phase is not None:
        return deadline(phase)
    return _CAUGHT_BY.get(decided, decided.value)


def _outcome(net: Network, job_id: str, names: dict[str, str], refused_commit: bool) -> JobOutcome:
    detail = decode_job_detail(net.job(job_id))
    record = detail.job.record
    slash = next(iter(detail.events(Slashed)), None)
    resolved = detail.events(DisputeResolved)
    settled = next(iter(detail.events(JobSettled)), None)
    bonds: dict[str, int] = {}
    for forfeited in detail.events(BondForfeited):
        actor = names.get(forfeited.address, forfeited.address)
        bonds[actor] = bonds.get(actor, 0) + forfeited.amount
    reasons = [d.reason for d in resolved]
    if slash is not None:
        deciding = next((d for d in resolved if d.loser_role is Party.SOLVER), None)
        located = None if deciding is None else deciding.located_step
        caught = classify(slash.resolution, refused_commit)
        if deciding is None:
            reasons.append(slash.reason)
    elif resolved:
        located = resolved[0].located_step
        caught = "; ".join(sorted({classify(d.resolution) for d in resolved}))
    else:
        located, caught = None, NONE
    return JobOutcome(
        job_id=job_id,
        status=record.status,
        solver_slashed=slash is not None,
        located_step=located,
        caught_by=caught,
        slashed=0 if slash is None else slash.amount,
        slash_reward=0 if slash is None else slash.reward,
        slash_burned=0 if slash is None else slash.burned,
        solver_paid=0 if settled is None else settled.price,
        bonds_lost=bonds,
        challengers=[names.get(a, a) for a in record.challengers],
        attesters=[names.get(a, a) for a in record.attesters],
        reasons=reasons,
        slash_rewards={
            names.get(address, address): int(amount)
            for address, amount in (slash.rewards if slash else {}).items()
        },
    )


def _check_supply(net: Network, addresses: Sequence[str]) -> str:
    """'' if the books balance: the ledger's invariant, and our own tally of the accounts."""
    state = net.chain.state
    try:
        report = check_invariant(state)
    except ProofNetError as exc:
        return exc.message
    known = set(addresses)
    strangers = sorted(a for a, _ in state.accounts() if a not in known)
    if strangers:
        return f"accounts nobody in the scenario owns: {strangers}"
    held = 0
    for address in addresses:
        account = decode_account(net.client.get_account(address))
        held += int(account.balance) + account.total_stake
    held += report.escrow + report.bonds + report.burned
    if held != report.issued:
        return f"the actors hold {held}, {report.issued} were issued"
    return ""


def run_scenario(
    scenario: Scenario,
    *,
    max_rounds: int = 300,
    solver_options: Mapping[str, Any] | None = None,
    verifier_options: Mapping[str, Any] | None = None,
) -> ScenarioResult:
    """Play ``scenario`` on a fresh in-process network and report what happened."""
    net = Network(salt=f"{scenario.name}/{scenario.seed}")
    client = RecordingClient(net)
    net.client = client
    names: dict[str, str] = {}
    honest: set[str] = set()
    verifiers: dict[str, VerifierAgent] = {}
    for actor, ref in scenario.actors():
        if ref.is_solver:
            strategy = ref.load()
            assert isinstance(strategy, SolverStrategy)
            stake = 4 * max(scenario.jobs, 1) * scenario.job_terms().min_stake
            agent: Any = net.add_solver(
                actor, strategy, **{"stake": stake, **(solver_options or {})}
            )
        else:
            strategy = ref.load()
            assert isinstance(strategy, VerifierStrategy)
            agent = net.add_verifier(actor, strategy, **(verifier_options or {}))
            verifiers[actor] = agent
        names[agent.address] = actor
        if ref.is_honest:
            honest.add(actor)
    net.warm_up()

    started = time.perf_counter()
    job_ids = [
        net.post_job(scenario.job_spec(i), scenario.job_terms(), submitter=f"submitter-{i}")
        for i in range(scenario.jobs)
    ]
    timed_out = False
    try:
        rounds = net.run_jobs(*job_ids, max_rounds=max_rounds)
    except TimeoutError:
        rounds, timed_out = max_rounds, True
    wall = time.perf_counter() - started

    rejections = [
        Rejection(names.get(sender, sender), kind, code, message)
        for sender, kind, code, message in client.refused
    ]
    refused_commit = any(
        r.kind in ("commit_progress", "commit_final") and r.code == "invalid_proof"
        for r in rejections
    )
    jobs = [_outcome(net, job_id, names, refused_commit) for job_id in job_ids]
    honest_losses = sorted(
        {a for job in jobs for a in job.bonds_lost if a in honest}
        | {names[a.address] for a in net.agents if names[a.address] in honest and _slashed(net, a)}
    )
    submitters = [decode_job(net.job(job_id)).submitter for job_id in job_ids]  # by post_job
    error = _check_supply(net, [*names, *submitters])
    checks = {
        actor: {job_id: agent.checks[job_id] for job_id in job_ids if job_id in agent.checks}
        for actor, agent in verifiers.items()
    }
    return ScenarioResult(
        scenario=scenario,
        jobs=jobs,
        honest_losses=honest_losses,
        supply_ok=not error,
        supply_error=error,
        rounds=rounds,
        wall_s=wall,
        checks=checks,
        rejections=rejections,
        timed_out=timed_out,
    )


def _slashed(net: Network, agent: Any) -> bool:
    return decode_account(net.client.get_account(agent.address)).jobs_slashed > 0

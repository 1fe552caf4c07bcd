"""Adversarial scenarios as data: actors, knobs, a seed and the outcome the protocol must reach.

A ``Scenario`` declares who plays (a solver strategy and verifier strategies, each a dotted path
with knobs), the job (overrides of a tiny base spec, the economic terms) and the ``Expected``
outcome: whether the solver is slashed, which challengers lose their bond, which step the dispute
must locate and what catches the cheat. ``run_scenario`` plays it on a fresh in-process
``Network`` (in-memory ledger with its invariant checked after every transaction, real agents,
virtual clock) and returns a ``ScenarioResult`` whose ``mismatches`` list every difference from
the expectation — empty when the protocol did what it promised.

Glossary
    first wrong step   the step s whose result the cheater first got wrong: re-running step s
                       from the agreed pre-state gives another hash. The dispute must locate it.
    deterministic      the sample covers every cheated segment (k = m), so the cheat is caught
                       in every run; others depend on the sample (see ``services.detection``).
    caught by          what decided the game: the referee's one-step re-execution, its leaf-0
                       check, a missed move deadline, or a ledger rule followed by a deadline.

Expected values are computed from the knobs by the builders below (``perturb_step(step=s)``
expects s), never copied from a run. ``SCENARIOS`` covers every catalogue entry: cheating
solvers against honest verifiers, cheating verifiers against an honest solver, and all-honest.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from contracts_sim.blocks import Receipt
from contracts_sim.dispute import bisection_midpoint
from contracts_sim.invariants import check_invariant
from contracts_sim.transactions import Transaction
from protocol.datasets import load_dataset
from protocol.errors import ProofNetError
from protocol.spec import JobSpec, parse_spec
from services.agents.strategy import (
    SolverStrategy,
    Strategy,
    VerifierStrategy,
    load_strategy,
)
from services.agents.verifier import Check, VerifierAgent
from services.client import LocalChainClient, TxLike
from services.network import JobTerms, Network
from services.strategies import cheaters

CHEATERS = "services.strategies.cheaters"
VERIFIERS = "services.strategies.verifiers"
HONEST_SOLVER_PATH = "services.agents.strategy:SolverStrategy"
HONEST_VERIFIER_PATH = "services.agents.strategy:VerifierStrategy"

# --- what catches a cheat (ScenarioResult.caught_by) ----------------------------------------
ONE_STEP = "one-step adjudication"
"""The referee re-ran the located step from the agreed pre-state and compared hashes."""
LEAF_ZERO = "leaf-0 check"
"""The referee recomputed the initial state from the spec."""
INVALID_PRESTATE = "pre-state validity check"
"""The agreed pre-state blob is not a state of the spec (the solver authored it)."""
TRAINING_DEADLINE = "training deadline"
CONSISTENCY = "commit refused + training deadline"
"""The ledger refused a commitment (a root that does not extend the last one, or a leaf 0 that
is not the spec's initial state); the solver then missed the training deadline."""
NONE = "none"
"""Nobody lost anything: the job settled and every bond came back."""


def deadline(phase: str) -> str:
    """The outcome 'the party to move missed the ``phase`` deadline'."""
    return f"{phase} deadline"


ANY: Literal["any"] = "any"
"""``Expected.located_step`` when the step depends on the run (a griefer's random descent)."""

BASE_SPEC: dict[str, Any] = {
    "version": 1,
    "model": {"family": "mlp", "input_dim": 16, "hidden": [16], "classes": 4},
    "dataset": {"id": "synthetic-blobs-v1", "hash": ""},  # filled in by spec_for
    "seed": 3,
    "steps": 32,
    "batch_size": 8,
    "optimizer": {"name": "sgd", "lr_log2": -3, "momentum": 0.875},
    "checkpoint_interval": 4,
}
"""The scenarios' job: a 16-16-4 MLP on synthetic blobs, 32 steps, C = 4 (m = 8 segments)."""

DEFAULT_TERMS = JobTerms()
"""Payment 1000, fee 100, stake 200; ``Scenario.job_terms`` sets the sample count."""


def spec_for(overrides: Mapping[str, Any] | None = None, seed: int | None = None) -> JobSpec:
    """``BASE_SPEC`` with ``overrides`` (top-level keys) and ``seed``; the dataset hash pinned."""
    data = {**BASE_SPEC, **(overrides or {})}
    if seed is not None:
        data["seed"] = seed
    dataset = dict(data["dataset"])
    if not dataset.get("hash"):
        dataset["hash"] = load_dataset(dataset["id"]).content_hash_hex
    data["dataset"] = dataset
    return parse_spec(data)


# --- the data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategyRef:
    """A strategy by dotted path (``package.module:Class``) with its knobs, and an actor name."""

    path: str
    knobs: Mapping[str, Any] = field(default_factory=dict)
    actor: str | None = None  # default: the strategy's catalogue name

    @property
    def cls(self) -> type[Strategy]:
        module_name, _, class_name = self.path.partition(":")
        found = getattr(importlib.import_module(module_name), class_name, None)
        if not (isinstance(found, type) and issubclass(found, Strategy)):
            raise ValueError(f"{self.path!r} is not a strategy class")
        return found

    @property
    def is_solver(self) -> bool:
        return issubclass(self.cls, SolverStrategy)

    def load(self) -> Strategy:
        return load_strategy(
            self.path, "solver" if self.is_solver else "verifier", dict(self.knobs)
        )

    @property
    def is_honest(self) -> bool:
        return self.path in (HONEST_SOLVER_PATH, HONEST_VERIFIER_PATH)

    def label(self) -> str:
        """``perturb-step(step=16)``: the catalogue name and the knobs set."""
        name = self.cls.name
        if not self.knobs:
            return name
        return f"{name}({', '.join(f'{k}={v}' for k, v in sorted(self.knobs.items()))})"


def honest_solver() -> StrategyRef:
    return StrategyRef(HONEST_SOLVER_PATH, actor="solver")


def honest_verifier(actor: str = "verifier") -> StrategyRef:
    return StrategyRef(HONEST_VERIFIER_PATH, actor=actor)


def cheater(cls_name: str, **knobs: Any) -> StrategyRef:
    return StrategyRef(f"{CHEATERS}:{cls_name}", knobs, actor="solver")


def bad_verifier(cls_name: str, actor: str | None = None, **knobs: Any) -> StrategyRef:
    return StrategyRef(f"{VERIFIERS}:{cls_name}", knobs, actor=actor)


@dataclass(frozen=True)
class Expected:
    """The outcome the protocol must reach, for every job of the scenario."""

    solver_slashed: bool
    challengers_lose_bond: tuple[str, ...] | bool = False
    """True: every challenger loses its bond; False: none does; names: exactly these do."""
    located_step: int | Literal["any"] | None = None
    """The step the deciding dispute locates (None: decided without locating one)."""
    caught_by: str | tuple[str, ...] = NONE
    """What decided it (one of the constants above; a tuple lists accepted alternatives)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    attack: str  # the catalogue entry it plays ("honest" for none)
    solver: StrategyRef
    verifiers: tuple[StrategyRef, ...]
    expected: Expected
    spec: Mapping[str, Any] = field(default_factory=dict)  # overrides of BASE_SPEC
    terms: JobTerms | None = None  # None: DEFAULT_TERMS sampling every segment (k = m)
    seed: int = 3
    jobs: int = 1  # jobs posted at once (job i uses seed + i)
    deterministic: bool = True
    note: str = ""

    def job_spec(self, index: int = 0) -> JobSpec:
        return spec_for(self.spec, self.seed + index)

    def job_terms(self) -> JobTerms:
        if self.terms is not None:
            return self.terms
        return replace(DEFAULT_TERMS, sample_count=self.job_spec().num_segments)

    def actors(self) -> list[tuple[str, StrategyRef]]:
        """(actor name, strategy) for the solver, then each verifier; names are unique."""
        named: list[tuple[str, StrategyRef]] = [(self.solver.actor or "solver", self.solver)]
        for ref in self.verifiers:
            base = ref.actor or ref.cls.name
            name, n = base, 1
            while name in {existing for existing, _ in named}:
                n += 1
                name = f"{base}-{n}"
            named.append((name, ref))
        return named


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """A transaction the ledger refused (agents retry; most refusals are harmless races)."""

    actor: str
    kind: str
    code: str
    message: str


@dataclass
class JobOutcome:
    job_id: str
    status: str
    solver_slashed: bool
    located_step: int | None
    caught_by: str
    slashed: int  # stake taken from the solver
    slash_reward: int
    slash_burned: int
    solver_paid: int  # price paid at settlement
    bonds_lost: dict[str, int]  # actor -> bond forfeited
    challengers: list[str]
    attesters: list[str]
    reasons: list[str]  # every dispute resolution and slash, in order
    slash_rewards: dict[str, int] = field(default_factory=dict)  # actor -> share of the reward


@dataclass
class ScenarioResult:
    scenario: Scenario
    jobs: list[JobOutcome]
    honest_losses: list[str]  # honest actors slashed or losing a bond: must stay empty
    supply_ok: bool
    supply_error: str
    rounds: int
    wall_s: float
    checks: dict[str, dict[str, Check]]  # verifier actor -> job id -> what it found
    rejections: list[Rejection]
    timed_out: bool = False

    @property
    def first(self) -> JobOutcome:
        return self.jobs[0]

    @property
    def mismatches(self) -> list[str]:
        """Every way the run differs from ``scenario.expected`` (empty: it passed)."""
        found = []
        if self.timed_out:
            found.append("the jobs did not finish")
        if not self.supply_ok:
            found.append(f"supply invariant: {self.supply_error}")
        if self.honest_losses:
            found.append(f"honest parties lost money: {self.honest_losses}")
        for job in self.jobs:
            found += [f"job {job.job_id[:8]}: {m}" for m in _compare(self.scenario, job)]
        return found

    @property
    def passed(self) -> bool:
        return not self.mismatches


def _compare(scenario: Scenario, job: JobOutcome) -> list[str]:
    expected = scenario.expected
    found = []
    if job.solver_slashed != expected.solver_slashed:
        found.append(f"solver slashed: {job.solver_slashed}, expected {expected.solver_slashed}")
    if not expected.solver_slashed and job.status != "settled":
        found.append(f"status {job.status}, expected settled")
    losers = set(job.bonds_lost)
    want = expected.challengers_lose_bond
    if want is True:
        if not job.challengers or losers != set(job.challengers):
            found.append(f"bonds lost by {sorted(losers)}, expected every challenger")
    elif want is False:
        if losers:
            found.append(f"bonds lost by {sorted(losers)}, expected none")
    elif losers != set(want):
        found.append(f"bonds lost by {sorted(losers)}, expected {sorted(want)}")
    if expected.located_step != ANY and job.located_step != expected.located_step:
        found.append(f"located step {job.located_step}, expected {expected.located_step}")
    accepted = (expected.caught_by,) if isinstance(expected.caught_by, str) else expected.caught_by
    if job.caught_by not in accepted:
        found.append(f"caught by {job.caught_by!r}, expected {' or '.join(accepted)!r}")
    return found


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


_DEADLINE = re.compile(r"missed the (\w+) deadline")


def classify(reason: str, refused_commit: bool = False) -> str:
    """What a ledger reason (of a dispute resolution or a slash) says decided the game."""
    if "re-executed to" in reason:
        return ONE_STEP
    if reason.startswith("leaf 0 "):
        return LEAF_ZERO
    if "pre-state of step" in reason and "invalid" in reason:
        return INVALID_PRESTATE
    if reason == "missed the training deadline":
        return CONSISTENCY if refused_commit else TRAINING_DEADLINE
    match = _DEADLINE.search(reason)
    if match:
        return deadline(match.group(1))
    return reason


def _outcome(net: Network, job_id: str, names: dict[str, str], refused_commit: bool) -> JobOutcome:
    record = net.job(job_id)
    events = [(e["kind"], e["data"]) for e in record["history"]]
    slash = next((d for k, d in events if k == "slashed"), None)
    resolved = [d for k, d in events if k == "dispute_resolved"]
    settled = next((d for k, d in events if k == "job_settled"), None)
    bonds: dict[str, int] = {}
    for kind, data in events:
        if kind == "bond_forfeited":
            actor = names.get(data["address"], data["address"])
            bonds[actor] = bonds.get(actor, 0) + int(data["amount"])
    reasons = [str(d["reason"]) for d in resolved]
    if slash is not None:
        deciding = next((d for d in resolved if d["loser_role"] == "solver"), None)
        located = None if deciding is None else deciding["located_step"]
        caught = classify(str(slash["reason"]), refused_commit)
        if deciding is None:
            reasons.append(str(slash["reason"]))
    elif resolved:
        located = resolved[0]["located_step"]
        caught = "; ".join(sorted({classify(r) for r in reasons}))
    else:
        located, caught = None, NONE
    return JobOutcome(
        job_id=job_id,
        status=str(record["status"]),
        solver_slashed=slash is not None,
        located_step=None if located is None else int(located),
        caught_by=caught,
        slashed=0 if slash is None else int(slash["amount"]),
        slash_reward=0 if slash is None else int(slash["reward"]),
        slash_burned=0 if slash is None else int(slash["burned"]),
        solver_paid=0 if settled is None else int(settled["price"]),
        bonds_lost=bonds,
        challengers=[names.get(a, a) for a in record["challengers"]],
        attesters=[names.get(a, a) for a in record["attesters"]],
        reasons=reasons,
        slash_rewards={
            names.get(address, address): int(amount)
            for address, amount in (slash or {}).get("rewards", {}).items()
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
        account = net.client.get_account(address)
        held += int(account["balance"]) + int(account["total_stake"])
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
    submitters = [
        net.client.get_job(job_id)["submitter"] for job_id in job_ids
    ]  # funded by post_job
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
    return int(net.client.get_account(agent.address)["jobs_slashed"]) > 0


# --- expected values from knobs --------------------------------------------------------------


def segment_of(spec: JobSpec, step: int) -> tuple[int, int]:
    """The step interval [a, b] of the segment that contains ``step``."""
    a = step // spec.checkpoint_interval * spec.checkpoint_interval
    return a, a + spec.checkpoint_interval


def midpoints(a: int, b: int, first_wrong: int) -> list[int]:
    """The midpoints a bisection over [a, b] asks the solver for, converging on ``first_wrong``.

    State m is wrong iff the first wrong step is before it (``first_wrong < m``); the honest
    challenger then disagrees and the interval becomes [a, m], else [m, b].
    """
    asked = []
    while b - a > 1:
        m = bisection_midpoint(a, b)
        asked.append(m)
        a, b = (a, m) if first_wrong < m else (m, b)
    return asked


def _solver_cheat(
    name: str,
    attack: str,
    ref: StrategyRef,
    expected: Expected,
    *,
    spec: Mapping[str, Any] | None = None,
    seed: int = 3,
    terms: JobTerms | None = None,
    verifiers: tuple[StrategyRef, ...] | None = None,
    note: str = "",
) -> Scenario:
    return Scenario(
        name=name,
        attack=attack,
        solver=ref,
        verifiers=verifiers or (honest_verifier(),),
        expected=expected,
        spec=dict(spec or {}),
        terms=terms,
        seed=seed,
        note=note,
    )


def _slashed_at(step: int) -> Expected:
    return Expected(solver_slashed=True, located_step=step, caught_by=ONE_STEP)


def _suffix(knobs: Mapping[str, Any], seed: int, spec: Mapping[str, Any] | None) -> str:
    parts = [f"{k}={v}" for k, v in sorted(knobs.items())]
    if seed != 3:
        parts.append(f"seed={seed}")
    parts += [f"{k}={v}" for k, v in sorted((spec or {}).items())]
    return f"[{','.join(parts)}]" if parts else ""


def no_training(
    mode: str | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if mode is None else {"mode": mode}
    return _solver_cheat(
        f"no-training{_suffix(knobs, seed, spec)}",
        "no-training",
        cheater("NoTraining", **knobs),
        _slashed_at(0),  # step 0 already does not train
        spec=spec,
        seed=seed,
    )


def fewer_steps(
    fraction: float | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if fraction is None else {"fraction": fraction}
    job = spec_for(spec, seed)
    first = int(job.steps * (0.5 if fraction is None else fraction))
    return _solver_cheat(
        f"fewer-steps{_suffix(knobs, seed, spec)}",
        "fewer-steps",
        cheater("FewerSteps", **knobs),
        _slashed_at(first),
        spec=spec,
        seed=seed,
    )


def perturb_step(
    step: int | None = None,
    bit: int | None = None,
    *,
    seed: int = 3,
    spec: Mapping[str, Any] | None = None,
) -> Scenario:
    knobs = {k: v for k, v in (("step", step), ("bit", bit)) if v is not None}
    job = spec_for(spec, seed)
    s = job.steps // 2 if step is None else step
    return _solver_cheat(
        f"perturb-step{_suffix(knobs, seed, spec)}",
        "perturb-step",
        cheater("PerturbStep", **knobs),
        _slashed_at(s),
        spec=spec,
        seed=seed,
    )


def perturb_from(
    step: int | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if step is None else {"step": step}
    job = spec_for(spec, seed)
    return _solver_cheat(
        f"perturb-from{_suffix(knobs, seed, spec)}",
        "perturb-from",
        cheater("PerturbFrom", **knobs),
        _slashed_at(job.steps // 2 if step is None else step),
        spec=spec,
        seed=seed,
    )


def wrong_data_order(
    seed_offset: int | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if seed_offset is None else {"seed_offset": seed_offset}
    return _solver_cheat(
        f"wrong-data-order{_suffix(knobs, seed, spec)}",
        "wrong-data-order",
        cheater("WrongDataOrder", **knobs),
        _slashed_at(0),  # the first batch is already another one
        spec=spec,
        seed=seed,
    )


def wrong_learning_rate(
    lr_log2: int | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if lr_log2 is None else {"lr_log2": lr_log2}
    return _solver_cheat(
        f"wrong-learning-rate{_suffix(knobs, seed, spec)}",
        "wrong-learning-rate",
        cheater("WrongLearningRate", **knobs),
        _slashed_at(0),  # the first update already uses the wrong rate
        spec=spec,
        seed=seed,
    )


def lazy_replay(
    leaf: int | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if leaf is None else {"leaf": leaf}
    job = spec_for(spec, seed)
    first_leaf = job.num_leaves // 2 if leaf is None else leaf
    return _solver_cheat(
        f"lazy-replay{_suffix(knobs, seed, spec)}",
        "lazy-replay",
        cheater("LazyReplay", **knobs),
        # It stops working at the first step of the segment that ends at ``leaf``.
        _slashed_at((first_leaf - 1) * job.checkpoint_interval),
        spec=spec,
        seed=seed,
    )


def rewrite_history(
    leaf: int | None = None,
    after: int | None = None,
    *,
    seed: int = 3,
    spec: Mapping[str, Any] | None = None,
) -> Scenario:
    knobs = {k: v for k, v in (("leaf", leaf), ("after", after)) if v is not None}
    return _solver_cheat(
        f"rewrite-history{_suffix(knobs, seed, spec)}",
        "rewrite-history",
        cheater("RewriteHistory", **knobs),
        # Progress roots are posted every 4 leaves; once one exists, a rewritten root cannot
        # prove it extends it, so neither later progress nor the final commit is accepted.
        Expected(solver_slashed=True, located_step=None, caught_by=CONSISTENCY),
        spec=spec,
        seed=seed,
        # A shorter training window: the missed deadline is what slashes it.
        terms=replace(DEFAULT_TERMS, sample_count=spec_for(spec).num_segments, train_blocks=24),
    )


def fake_leaf(
    leaf: int | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if leaf is None else {"leaf": leaf}
    job = spec_for(spec, seed)
    fake = job.num_leaves // 2 if leaf is None else leaf
    if fake == 0:
        # commit_final checks leaf 0 against the spec's initial state: the fabricated root is
        # refused and the solver misses its training deadline.
        expected = Expected(solver_slashed=True, located_step=None, caught_by=CONSISTENCY)
    else:
        # The honest step before the leaf "produced" the fabricated hash.
        expected = _slashed_at(fake * job.checkpoint_interval - 1)
    return _solver_cheat(
        f"fake-leaf{_suffix(knobs, seed, spec)}",
        "fake-leaf",
        cheater("FakeLeaf", **knobs),
        expected,
        spec=spec,
        seed=seed,
    )


def withhold_data(
    what: str | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if what is None else {"what": what}
    return _solver_cheat(
        f"withhold-data{_suffix(knobs, seed, spec)}",
        "withhold-data",
        cheater("WithholdData", **knobs),
        # Its trajectory is right, so the verifiers ask for the data on chain (a data request)
        # and the solver, which withholds it there too, misses the publication deadline.
        Expected(solver_slashed=True, located_step=None, caught_by=deadline("publish_data")),
        spec=spec,
        seed=seed,
    )


def withhold_then_publish(what: str = "blobs", *, seed: int = 3) -> Scenario:
    """Withholds from verifiers but publishes when asked on chain: a data request makes it
    publish, nobody loses anything, and the verifiers attest once the data is out."""
    return _solver_cheat(
        f"withhold-then-publish{_suffix({'what': what}, seed, None)}",
        "withhold-data",
        cheater("WithholdData", what=what, publish=True),
        Expected(solver_slashed=False, located_step=None, caught_by=NONE),
        seed=seed,
    )


def stall_dispute(
    step: int | None = None,
    moves: int | None = None,
    *,
    seed: int = 3,
    spec: Mapping[str, Any] | None = None,
) -> Scenario:
    knobs = {k: v for k, v in (("step", step), ("moves", moves)) if v is not None}
    job = spec_for(spec, seed)
    s = job.steps // 2 if step is None else step
    asked = midpoints(*segment_of(job, s), s)
    if (moves or 0) < len(asked):
        expected = Expected(solver_slashed=True, caught_by=deadline("post_midpoint"))
    else:
        # It answered every midpoint; the challenger may post the pre-state itself.
        expected = _slashed_at(s)
    return _solver_cheat(
        f"stall-dispute{_suffix(knobs, seed, spec)}",
        "stall-dispute",
        cheater("StallDispute", **knobs),
        expected,
        spec=spec,
        seed=seed,
    )


def lie_at_midpoint(
    step: int | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs = {} if step is None else {"step": step}
    job = spec_for(spec, seed)
    s = job.steps // 2 if step is None else step
    _, end = segment_of(job, s)
    return _solver_cheat(
        f"lie-at-midpoint{_suffix(knobs, seed, spec)}",
        "lie-at-midpoint",
        cheater("LieAtMidpoint", **knobs),
        # Honest midpoint hashes are agreed, so the interval is pushed to the segment's last
        # step — where its committed leaf is wrong. By its own claims that is its first lie.
        _slashed_at(end - 1),
        spec=spec,
        seed=seed,
    )


def adaptive(
    fraction: float | None = None,
    cheat_seed: int | None = None,
    *,
    seed: int = 3,
    spec: Mapping[str, Any] | None = None,
) -> Scenario:
    knobs = {k: v for k, v in (("fraction", fraction), ("seed", cheat_seed)) if v is not None}
    job = spec_for(spec, seed)
    cheated = cheaters.AdaptiveCheater(**knobs).cheated_segments(job)
    first = min(cheated) * job.checkpoint_interval + job.checkpoint_interval - 1
    return _solver_cheat(
        f"adaptive{_suffix(knobs, seed, spec)}",
        "adaptive",
        cheater("AdaptiveCheater", **knobs),
        _slashed_at(first),  # the verifier locates the first wrong leaf from the start
        spec=spec,
        seed=seed,
        note=f"cheats in segments {sorted(cheated)}; k = m makes it deterministic",
    )


def false_challenger(
    segment: int | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs: dict[str, Any] = {} if segment is None else {"segment": segment}
    job = spec_for(spec, seed)
    # It then plays honestly and agrees with every child and midpoint: without a named segment
    # the descent runs to the last leaf, and the bisection to the last step of the segment,
    # which re-executes to the solver's hash.
    last = job.num_segments - 1 if segment is None else segment
    return Scenario(
        name=f"false-challenger{_suffix(knobs, seed, spec)}",
        attack="false-challenger",
        solver=honest_solver(),
        verifiers=(bad_verifier("FalseChallenger", **knobs),),
        expected=Expected(
            solver_slashed=False,
            challengers_lose_bond=("false-challenger",),
            located_step=(last + 1) * job.checkpoint_interval - 1,
            caught_by=ONE_STEP,
        ),
        spec=dict(spec or {}),
        seed=seed,
    )


def stalling_challenger(
    segment: int | None = None, *, seed: int = 3, spec: Mapping[str, Any] | None = None
) -> Scenario:
    knobs: dict[str, Any] = {} if segment is None else {"segment": segment}
    job = spec_for(spec, seed)
    # Its first move is its last: a choice of child in the descent, or, with a named segment,
    # the answer to the solver's first midpoint. A one-step segment has no midpoint: the
    # solver posts the pre-state and the referee rules at once.
    located, caught = None, deadline("choose_child" if segment is None else "respond_midpoint")
    if segment is not None and job.checkpoint_interval == 1:
        located, caught = segment, ONE_STEP
    expected = Expected(
        solver_slashed=False,
        challengers_lose_bond=("stalling-challenger",),
        located_step=located,
        caught_by=caught,
    )
    return Scenario(
        name=f"stalling-challenger{_suffix(knobs, seed, spec)}",
        attack="stalling-challenger",
        solver=honest_solver(),
        verifiers=(bad_verifier("StallingChallenger", **knobs),),
        expected=expected,
        spec=dict(spec or {}),
        seed=seed,
    )


def griefer(*, seed: int = 3, jobs: int = 1, spec: Mapping[str, Any] | None = None) -> Scenario:
    return Scenario(
        name=f"griefer{_suffix({}, seed, spec)}" + (f"x{jobs}" if jobs > 1 else ""),
        attack="griefer",
        solver=honest_solver(),
        verifiers=(bad_verifier("Griefer"),),
        # It descends to one side at random (leaf 0, or the last segment where it disagrees
        # with every midpoint); either way the referee finds the solver right.
        expected=Expected(
            solver_slashed=False,
            challengers_lose_bond=("griefer",),
            located_step=ANY,
            caught_by=(LEAF_ZERO, ONE_STEP),
        ),
        spec=dict(spec or {}),
        seed=seed,
        jobs=jobs,
        note="one bond lost per job challenged" if jobs > 1 else "",
    )


def lazy_verifier_alone(step: int = 16, *, seed: int = 3) -> Scenario:
    return Scenario(
        name="lazy-verifier-alone",
        attack="lazy-verifier",
        solver=cheater("PerturbStep", step=step),
        verifiers=(bad_verifier("LazyVerifier"),),
        # Nobody re-executes, so the cheat goes through: why a job has several verifiers.
        expected=Expected(solver_slashed=False, caught_by=NONE),
        seed=seed,
        note="the cheat is NOT caught: the protocol cannot see a lazy attestation",
    )


def lazy_verifier_with_honest(step: int = 16, *, seed: int = 3) -> Scenario:
    return Scenario(
        name="lazy-verifier+honest",
        attack="lazy-verifier",
        solver=cheater("PerturbStep", step=step),
        verifiers=(bad_verifier("LazyVerifier"), honest_verifier()),
        expected=_slashed_at(step),
        seed=seed,
        note="one honest verifier is enough",
    )


def accomplice_challenger(step: int = 13, *, seed: int = 3) -> Scenario:
    """The cheater's own staked account challenges its bad segment next to an honest verifier;
    the ledger shares the slash reward between them (``JobOutcome.slash_rewards``)."""
    segment = step // spec_for(None, seed).checkpoint_interval  # the one its partner corrupted
    return Scenario(
        name="accomplice-challenger+honest",
        attack="accomplice-challenger",
        solver=cheater("PerturbStep", step=step),
        verifiers=(
            honest_verifier(),
            StrategyRef(f"{VERIFIERS}:AccompliceChallenger", {"segment": segment}, "accomplice"),
        ),
        expected=_slashed_at(step),
        seed=seed,
        note="the accomplice and the honest verifier share the reward",
    )


def honest(*, seed: int = 3, spec: Mapping[str, Any] | None = None) -> Scenario:
    return Scenario(
        name=f"honest{_suffix({}, seed, spec)}",
        attack="honest",
        solver=honest_solver(),
        verifiers=(honest_verifier("verifier-1"), honest_verifier("verifier-2")),
        expected=Expected(solver_slashed=False, caught_by=NONE),
        spec=dict(spec or {}),
        seed=seed,
    )


SCENARIOS: list[Scenario] = [
    honest(),
    no_training(),
    no_training("random"),
    fewer_steps(),
    perturb_step(),
    perturb_from(),
    wrong_data_order(),
    wrong_learning_rate(),
    lazy_replay(),
    rewrite_history(),
    fake_leaf(),
    fake_leaf(0),
    withhold_data(),
    withhold_data("blobs"),
    withhold_then_publish("leaves"),
    stall_dispute(),
    stall_dispute(moves=2),
    lie_at_midpoint(),
    adaptive(),
    false_challenger(),
    false_challenger(segment=4),
    stalling_challenger(),
    stalling_challenger(segment=2),
    griefer(),
    griefer(jobs=3),
    lazy_verifier_with_honest(),
    lazy_verifier_alone(),
    accomplice_challenger(),
    Scenario(
        name="perturb-step+2-honest-verifiers",
        attack="perturb-step",
        solver=cheater("PerturbStep", step=9),
        verifiers=(honest_verifier("verifier-1"), honest_verifier("verifier-2")),
        expected=_slashed_at(9),
        note="two winning challenges: the second is voided and its bond returned",
    ),
    Scenario(
        name="griefer+false-challenger+honest",
        attack="griefer",
        solver=honest_solver(),
        verifiers=(
            bad_verifier("Griefer"),
            bad_verifier("FalseChallenger"),
            honest_verifier(),
        ),
        expected=Expected(
            solver_slashed=False,
            challengers_lose_bond=("griefer", "false-challenger"),
            located_step=ANY,
            caught_by=(
                f"{LEAF_ZERO}; {ONE_STEP}",
                ONE_STEP,
            ),
        ),
        note="two games against one honest solver at once; the honest verifier attests",
    ),
]
"""The table: every catalogue entry at its default knobs, plus the scenarios that show how
entries combine. ``tests/adversarial`` plays more knob values per attack."""


def scenario_named(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(name)

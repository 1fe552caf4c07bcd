"""Scenarios as data: the strategies that play, the expected outcome, and the results a run
reports (``services.sim.scenarios`` has the glossary)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from contracts_sim.records import JobStatus
from protocol.datasets import load_dataset
from protocol.spec import JobSpec, parse_spec
from services.agents.strategy import (
    SolverStrategy,
    Strategy,
    load_strategy,
)
from services.agents.verifier import Check
from services.sim.network import JobTerms

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
    status: JobStatus
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
    if not expected.solver_slashed and job.status != JobStatus.SETTLED:
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

"""A seeded market model: the ledger's scored assignment against lowest-price.

Why: ``contracts_sim.scoring`` ranks bids by price, stake, capacity and history to answer
the critique of lowest-price assignment (strong nodes that never win, weak nodes that win
big jobs, idle nodes next to crowded ones, cheap cheaters). This module measures whether it
does, in a discrete-time market with no ledger processes and no training:

* Solvers have a real capacity (steps per block), a declared capacity (what they bid; a
  weak node may overclaim), a price per step, a stake, an honesty (probability of doing the
  work) and a reliability (probability of finishing a job given the capacity).
* Jobs of several sizes and deadlines arrive as a Poisson stream. Each is assigned at once
  to one of the bids of the solvers free enough to bid: free stake >= the job's min stake,
  declared capacity >= ``required_capacity``, price within the payment, fewer running jobs
  than the solver accepts. "scored" ranks them with the ledger's ``rank_bids``;
  "lowest-price" takes the cheapest (ties as the ledger breaks them).
* A solver shares its real capacity among its running jobs, so a crowded node misses
  deadlines. A miss is slashed (as ``claim_timeout`` does); a cheat is caught with the
  probability of ``protocol.economics.detection_with_verifiers`` and slashed, or settles
  unnoticed. Completed and slashed counts feed the next bids' history score.

Both policies see the same job stream and the same per-(job, solver) draws (common random
numbers), so their difference is the assignment's, not the dice's. See docs/market.md for
the assumptions and what the model cannot show.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from contracts_sim.params import BPS, Params
from contracts_sim.records import Account, Bid
from contracts_sim.scoring import rank_bids, rank_key, required_capacity
from protocol.economics import detection_with_verifiers
from protocol.types import Address, Amount, Height
from services.errors import MarketConfigError

SCORED: Final = "scored"
LOWEST_PRICE: Final = "lowest-price"
POLICIES: Final = (SCORED, LOWEST_PRICE)

WEIGHT_NAMES: Final = (
    "score_weight_price",
    "score_weight_stake",
    "score_weight_capacity",
    "score_weight_history",
)


# --- the scenario ------------------------------------------------------------------------


@dataclass(frozen=True)
class SolverProfile:
    """One solver's economics. ``declared_capacity`` is what it bids (the ledger cannot check
    it); ``capacity`` is what it really trains per block."""

    name: str
    archetype: str
    capacity: int
    declared_capacity: int
    price_per_step: int
    stake: int
    honesty: float  # probability of doing a job's work (1 - probability of cheating)
    reliability: float  # probability of finishing a job it has the capacity for
    max_active: int  # jobs it accepts at once: "free enough to bid"


@dataclass(frozen=True)
class JobClass:
    """A kind of job in the stream: its size, its deadline and how it is sampled."""

    name: str
    steps: int
    train_blocks: int
    share: float  # relative frequency in the stream
    segments: int  # m: checkpoint segments a verifier samples from
    sample_count: int  # k per verifier

    @property
    def needed_capacity(self) -> int:
        return required_capacity(self.steps, self.train_blocks)


@dataclass(frozen=True)
class Scenario:
    """Everything but the seed and the policy."""

    solvers: tuple[SolverProfile, ...]
    job_classes: tuple[JobClass, ...]
    jobs: int = 400
    load: float = 0.5  # offered work / total real capacity
    budget_per_step: int = 100  # a job's payment is steps * budget_per_step
    stake_ratio_bps: int = 15_000  # a job's min stake: this share of its payment ...
    verifiers: int = 1  # ... at least Params.min_solver_stake; V sampling verifiers
    cheat_share_bps: int = 2_500  # share of segments (and of the work) a cheat skips
    restake: bool = True  # a slashed solver tops its stake back up (keeps its history)
    declare_free_capacity: bool = False  # bid declared capacity less running jobs' needs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _solvers(
    prefix: str, count: int, archetype: str, **economics: Any
) -> tuple[SolverProfile, ...]:
    return tuple(
        SolverProfile(name=f"{prefix}-{i}", archetype=archetype, **economics)
        for i in range(1, count + 1)
    )


DEFAULT_SOLVERS: Final = (
    *_solvers(
        "strong",
        2,
        "strong, bids high",
        capacity=600,
        declared_capacity=600,
        price_per_step=80,
        stake=40_000_000,
        honesty=1.0,
        reliability=0.99,
        max_active=4,
    ),
    *_solvers(
        "mid",
        4,
        "mid-range",
        capacity=250,
        declared_capacity=250,
        price_per_step=55,
        stake=12_000_000,
        honesty=1.0,
        reliability=0.97,
        max_active=3,
    ),
    *_solvers(
        "weak",
        4,
        "weak, cheap, overclaims",
        capacity=60,
        declared_capacity=240,
        price_per_step=30,
        stake=4_000_000,
        honesty=1.0,
        reliability=0.9,
        max_active=4,
    ),
    *_solvers(
        "cheat",
        2,
        "cheater, cheapest",
        capacity=250,
        declared_capacity=250,
        price_per_step=25,
        stake=4_000_000,
        honesty=0.4,
        reliability=0.97,
        max_active=4,
    ),
)
"""The critique's archetypes: strong nodes that bid high, weak cheap nodes that claim more
capacity than they have, mid-range nodes, and two cheap cheaters."""

DEFAULT_JOB_CLASSES: Final = (
    JobClass("small-tight", 2_000, 20, 0.3, 16, 2),
    JobClass("small-loose", 2_000, 80, 0.3, 16, 2),
    JobClass("medium", 20_000, 100, 0.3, 32, 4),
    JobClass("large", 60_000, 150, 0.1, 64, 4),
)


def default_scenario(jobs: int = 400) -> Scenario:
    """The scenario of ``proofnet market simulate`` and the README table."""
    return Scenario(solvers=DEFAULT_SOLVERS, job_classes=DEFAULT_JOB_CLASSES, jobs=jobs)


# --- one run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobArrival:
    job_id: int
    block: int
    job_class: JobClass
    payment: int
    min_stake: int


@dataclass
class _SolverState:
    profile: SolverProfile
    bonded: int
    completed: int = 0
    slashed: int = 0
    busy_blocks: int = 0
    wins: int = 0
    misses: int = 0
    running: list[_Running] = field(default_factory=list)

    def bid_capacity(self, free: bool) -> int:
        """The capacity it declares: its declared figure, or (``free``) that figure less
        what its running jobs need by their deadlines, as the ledger could compute it."""
        if not free:
            return self.profile.declared_capacity
        committed = sum(run.job.job_class.needed_capacity for run in self.running)
        return max(0, self.profile.declared_capacity - committed)

    def account(self) -> Account:
        """What ``rank_bids`` reads: free stake and the ledger's history counters."""
        return Account(
            bonded=Amount(self.bonded),
            jobs_completed=self.completed,
            jobs_slashed=self.slashed,
        )


@dataclass
class _Running:
    job: JobArrival
    price: int
    last_block: int  # the last block it may work in (assigned + train_blocks - 1)
    total: int  # steps it trains (fewer for a cheat)
    stall_after: int  # steps after which it stops (an unreliable run: fewer than total)
    cheats: bool
    caught: bool  # drawn at assignment; only read if it cheats
    done: int = 0

    @property
    def remaining(self) -> int:
        return self.total - self.done

    @property
    def workable(self) -> int:
        """Steps it can still take before it ends or stalls."""
        return min(self.total, self.stall_after) - self.done


@dataclass(frozen=True)
class RunMetrics:
    """One (policy, seed) run. Counts are jobs; ``paid`` sums the prices of jobs that
    settled (undetected cheats included: the submitter paid for them)."""

    policy: str
    seed: int
    jobs: int
    unassigned: int
    completed: int
    deadline_misses: int
    cheater_wins: int
    caught: int
    undetected: int
    paid: int
    completed_steps: int
    busy_share: dict[str, float]
    wins: dict[str, int]
    misses: dict[str, int]

    @property
    def completion_rate(self) -> float:
        return self.completed / self.jobs

    @property
    def cost_per_completed(self) -> float:
        return self.paid / self.completed if self.completed else math.nan

    @property
    def cost_per_step(self) -> float:
        return self.paid / self.completed_steps if self.completed_steps else math.nan

    @property
    def busy_gini(self) -> float:
        return gini(list(self.busy_share.values()))

    def metrics(self) -> dict[str, float]:
        """The figures compared across policies, by METRICS key."""
        return {
            "completion_rate": self.completion_rate,
            "deadline_misses": float(self.deadline_misses),
            "cheater_wins": float(self.cheater_wins),
            "undetected": float(self.undetected),
            "unassigned": float(self.unassigned),
            "cost_per_completed": self.cost_per_completed,
            "cost_per_step": self.cost_per_step,
            "busy_gini": self.busy_gini,
            "busy_max": max(self.busy_share.values()),
            "busy_min": min(self.busy_share.values()),
            "objective": objective(self),
        }

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), **self.metrics()}


METRICS: Final = {
    "completion_rate": "completion rate",
    "deadline_misses": "deadline misses",
    "cheater_wins": "cheater wins",
    "undetected": "undetected cheats",
    "unassigned": "jobs with no bid",
    "cost_per_completed": "price per completed job",
    "cost_per_step": "price per completed step",
    "busy_gini": "busy-share Gini",
    "busy_max": "busiest solver's busy share",
    "busy_min": "idlest solver's busy share",
    "objective": "objective (market grid)",
}
"""Metric key -> label, in table order."""


def gini(values: Sequence[float]) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, near 1 when one solver
    does everything."""
    if not values or sum(values) == 0:
        return 0.0
    ordered = sorted(values)
    n = len(ordered)
    weighted = sum((i + 1) * v for i, v in enumerate(ordered))
    return (2 * weighted) / (n * sum(ordered)) - (n + 1) / n


def job_stream(scenario: Scenario, params: Params, seed: int) -> list[JobArrival]:
    """The jobs of one seed: Poisson arrivals at the rate that offers ``load`` of the
    solvers' total real capacity; classes drawn by share."""
    if scenario.jobs < 1:
        raise MarketConfigError(f"jobs must be at least 1, got {scenario.jobs}")
    if not scenario.job_classes or not scenario.solvers:
        raise MarketConfigError("a scenario needs at least one job class and one solver")
    rng = random.Random(f"market-jobs:{seed}")
    classes = scenario.job_classes
    weights = [c.share for c in classes]
    mean_steps = sum(c.steps * w for c, w in zip(classes, weights, strict=True)) / sum(weights)
    capacity = sum(s.capacity for s in scenario.solvers)
    rate = scenario.load * capacity / mean_steps  # jobs per block
    arrivals, clock = [], 0.0
    for job_id in range(scenario.jobs):
        clock += rng.expovariate(rate)
        job_class = rng.choices(classes, weights)[0]
        payment = job_class.steps * scenario.budget_per_step
        min_stake = max(params.min_solver_stake, payment * scenario.stake_ratio_bps // BPS)
        arrivals.append(JobArrival(job_id, int(clock), job_class, payment, min_stake))
    return arrivals


def _bid_price(profile: SolverProfile, job: JobArrival) -> int:
    return profile.price_per_step * job.job_class.steps


def _can_bid(solver: _SolverState, job: JobArrival, free: bool) -> bool:
    """The ledger's bid-time rules (price, declared capacity, free stake) and the solver's
    own: it takes at most ``max_active`` jobs at once."""
    profile = solver.profile
    return (
        _bid_price(profile, job) <= job.payment
        and solver.bid_capacity(free) >= job.job_class.needed_capacity
        and solver.bonded >= job.min_stake
        and len(solver.running) < profile.max_active
    )


Chooser = Callable[[list[tuple[Bid, Account]], JobArrival, Params], Bid]


def choose_scored(bids: list[tuple[Bid, Account]], job: JobArrival, params: Params) -> Bid:
    """The ledger's choice: the best of ``rank_bids`` (as ``close_bidding`` takes it)."""
    ranked = rank_bids(
        bids,
        payment=job.payment,
        min_stake=job.min_stake,
        steps=job.job_class.steps,
        train_blocks=job.job_class.train_blocks,
        params=params,
    )
    return ranked[0][1]


def choose_lowest_price(bids: list[tuple[Bid, Account]], job: JobArrival, params: Params) -> Bid:
    """The cheapest eligible bid; ties broken as the ledger breaks them (height, address)."""
    eligible = [bid for bid, account in bids if account.bonded >= job.min_stake]
    return min(eligible, key=lambda bid: rank_key(0, bid))


CHOOSERS: Final[dict[str, Chooser]] = {SCORED: choose_scored, LOWEST_PRICE: choose_lowest_price}


def cheated_segments(job_class: JobClass, scenario: Scenario) -> int:
    """Segments a cheat fakes (at least one): ``cheat_share_bps`` of the job's."""
    return max(1, job_class.segments * scenario.cheat_share_bps // BPS)


_detection = functools.lru_cache(maxsize=None)(detection_with_verifiers)
"""P(a verifier samples a faked segment): exact fractions, so computed once per job class."""


def _draws(seed: int, job: JobArrival, solver: SolverProfile) -> random.Random:
    """The dice of one (job, solver) pair, the same under every policy."""
    return random.Random(f"market:{seed}:{job.job_id}:{solver.name}")


def _start(
    solver: _SolverState, job: JobArrival, price: int, scenario: Scenario, seed: int
) -> None:
    """Lock the stake and start the job; draw whether it cheats, stalls, would be caught."""
    profile, job_class = solver.profile, job.job_class
    rng = _draws(seed, job, profile)
    cheats = rng.random() >= profile.honesty
    stalls = rng.random() >= profile.reliability
    stall_point = rng.random()
    cheated = cheated_segments(job_class, scenario)
    caught = rng.random() < _detection(
        job_class.segments, cheated, job_class.sample_count, scenario.verifiers
    )
    steps = job_class.steps
    if cheats:  # it skips the work of the segments it fakes
        steps -= steps * cheated // job_class.segments
    solver.bonded -= job.min_stake
    solver.running.append(
        _Running(
            job=job,
            price=price,
            last_block=job.block + job_class.train_blocks - 1,
            total=steps,
            stall_after=int(steps * stall_point) if stalls else steps,
            cheats=cheats,
            caught=caught,
        )
    )


def _work(solver: _SolverState) -> None:
    """One block of training: the real capacity shared equally by the running jobs that
    still progress, a job's unused share going to the others (water-filling)."""
    active = sorted(
        (run for run in solver.running if run.workable > 0), key=lambda run: run.workable
    )
    if not active:
        return
    solver.busy_blocks += 1
    left = solver.profile.capacity
    for i, run in enumerate(active):
        give = min(left // (len(active) - i), run.workable)
        run.done += give
        left -= give


@dataclass
class _Tally:
    unassigned: int = 0
    completed: int = 0
    deadline_misses: int = 0
    cheater_wins: int = 0
    caught: int = 0
    undetected: int = 0
    paid: int = 0
    completed_steps: int = 0


def _slash(solver: _SolverState, run: _Running, scenario: Scenario) -> None:
    solver.slashed += 1
    if scenario.restake:
        solver.bonded += run.job.min_stake


def _settle_or_slash(solver: _SolverState, block: int, scenario: Scenario, tally: _Tally) -> None:
    """Close the runs that finished or ran out of time at the end of ``block``."""
    still = []
    for run in solver.running:
        if run.remaining == 0:
            if run.cheats and run.caught:
                tally.caught += 1
                _slash(solver, run, scenario)
            else:
                tally.paid += run.price
                tally.completed += not run.cheats
                tally.completed_steps += 0 if run.cheats else run.total
                tally.undetected += run.cheats
                solver.completed += 1
                solver.bonded += run.job.min_stake
        elif block >= run.last_block:
            tally.deadline_misses += 1
            solver.misses += 1
            _slash(solver, run, scenario)
        else:
            still.append(run)
    solver.running = still


def simulate(policy: str, scenario: Scenario, params: Params, seed: int) -> RunMetrics:
    """One seeded run of ``scenario`` under ``policy`` (SCORED or LOWEST_PRICE)."""
    if policy not in CHOOSERS:
        raise MarketConfigError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    choose = CHOOSERS[policy]
    arrivals = job_stream(scenario, params, seed)
    solvers = {p.name: _SolverState(p, p.stake) for p in scenario.solvers}
    tally = _Tally()
    pending = list(reversed(arrivals))
    last = arrivals[-1].block + max(c.train_blocks for c in scenario.job_classes)
    for block in range(last + 1):
        while pending and pending[-1].block == block:
            job = pending.pop()
            _assign(job, solvers, choose, params, scenario, seed, tally)
        for solver in solvers.values():
            if solver.running:
                _work(solver)
                _settle_or_slash(solver, block, scenario, tally)
    return RunMetrics(
        policy=policy,
        seed=seed,
        jobs=len(arrivals),
        unassigned=tally.unassigned,
        completed=tally.completed,
        deadline_misses=tally.deadline_misses,
        cheater_wins=tally.cheater_wins,
        caught=tally.caught,
        undetected=tally.undetected,
        paid=tally.paid,
        completed_steps=tally.completed_steps,
        wins={name: s.wins for name, s in solvers.items()},
        misses={name: s.misses for name, s in solvers.items()},
        busy_share={name: s.busy_blocks / (last + 1) for name, s in solvers.items()},
    )


def _assign(
    job: JobArrival,
    solvers: dict[str, _SolverState],
    choose: Chooser,
    params: Params,
    scenario: Scenario,
    seed: int,
    tally: _Tally,
) -> None:
    bids = [
        (
            Bid(
                Address(s.profile.name),
                Amount(_bid_price(s.profile, job)),
                s.bid_capacity(scenario.declare_free_capacity),
                Height(job.block),
            ),
            s.account(),
        )
        for s in solvers.values()
        if _can_bid(s, job, scenario.declare_free_capacity)
    ]
    if not bids:
        tally.unassigned += 1
        return
    winner = choose(bids, job, params)
    solver = solvers[winner.solver]
    solver.wins += 1
    _start(solver, job, winner.price, scenario, seed)
    tally.cheater_wins += solver.running[-1].cheats


# --- many seeds, both policies -----------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """A metric over seeds."""

    mean: float
    sd: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return cls(math.nan, math.nan, math.nan, math.nan)
        sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
        return cls(statistics.fmean(finite), sd, min(finite), max(finite))


@dataclass(frozen=True)
class MarketResult:
    """Both policies over the same seeds: per-run figures and their spread."""

    scenario: Scenario
    weights: dict[str, int]
    seeds: tuple[int, ...]
    runs: tuple[RunMetrics, ...]

    def summary(self, policy: str) -> dict[str, Spread]:
        runs = [run.metrics() for run in self.runs if run.policy == policy]
        return {key: Spread.of([run[key] for run in runs]) for key in METRICS}

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.to_json(),
            "weights": self.weights,
            "seeds": list(self.seeds),
            "metrics": METRICS,
            "policies": {
                policy: {key: asdict(spread) for key, spread in self.summary(policy).items()}
                for policy in POLICIES
            },
            "runs": [run.to_json() for run in self.runs],
        }


def weights_of(params: Params) -> dict[str, int]:
    return {name: int(getattr(params, name)) for name in WEIGHT_NAMES}


def seed_range(first: int, count: int) -> tuple[int, ...]:
    if count < 1:
        raise MarketConfigError(f"seeds must be at least 1, got {count}")
    return tuple(range(first, first + count))


def compare(
    scenario: Scenario,
    params: Params,
    seeds: Sequence[int],
    policies: Sequence[str] = POLICIES,
) -> MarketResult:
    """Run every policy on every seed (the same job streams and draws for each policy)."""
    runs = tuple(simulate(policy, scenario, params, seed) for seed in seeds for policy in policies)
    return MarketResult(scenario, weights_of(params), tuple(seeds), runs)


# --- choosing the weights ----------------------------------------------------------------


@dataclass(frozen=True)
class GridRow:
    weights: tuple[int, int, int, int]  # price, stake, capacity, history (bps)
    objective: Spread
    completion_rate: float
    cheater_wins: float
    deadline_misses: float
    cost_per_completed: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "weights": dict(zip(WEIGHT_NAMES, self.weights, strict=True))}


OBJECTIVE: Final = (
    "completion rate - cheater wins / jobs (mean over seeds); ties: lower price per completed job"
)


def objective(run: RunMetrics) -> float:
    """What the weights are chosen for: jobs done right, less jobs handed to a cheater."""
    return run.completion_rate - run.cheater_wins / run.jobs


def weight_grid(step: int) -> list[tuple[int, int, int, int]]:
    """Every (price, stake, capacity, history) weight vector in multiples of ``step`` bps
    that sums to 10 000."""
    if step < 1 or BPS % step:
        raise MarketConfigError(f"the grid step must divide {BPS}, got {step}")
    units = BPS // step
    return [
        (p * step, s * step, c * step, (units - p - s - c) * step)
        for p in range(units + 1)
        for s in range(units + 1 - p)
        for c in range(units + 1 - p - s)
    ]


def grid_for(
    params: Params, step: int, min_price_weight: int = 0
) -> list[tuple[int, int, int, int]]:
    """``weight_grid(step)`` less the vectors that give price under ``min_price_weight``, plus
    ``params``' own weights, so that a preset is always ranked among the alternatives.

    Why a floor on the price weight: the model's solvers bid fixed prices. A real solver
    undercuts only if a lower price wins; with a small price weight it would bid the whole
    payment, a reaction the model does not play."""
    grid = [w for w in weight_grid(step) if w[0] >= min_price_weight]
    price, stake, capacity, history = weights_of(params).values()
    if (price, stake, capacity, history) not in grid:
        grid.append((price, stake, capacity, history))
    return grid


def search_weights(
    scenario: Scenario,
    params: Params,
    seeds: Sequence[int],
    step: int = 1_000,
    min_price_weight: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[GridRow]:
    """The scored policy for every vector of ``grid_for(params, step, min_price_weight)``,
    best first by OBJECTIVE."""
    grid = grid_for(params, step, min_price_weight)
    rows = []
    for done, weights in enumerate(grid, start=1):
        trial = params.with_changes(**dict(zip(WEIGHT_NAMES, weights, strict=True)))
        runs = [simulate(SCORED, scenario, trial, seed) for seed in seeds]
        rows.append(
            GridRow(
                weights=weights,
                objective=Spread.of([objective(run) for run in runs]),
                completion_rate=statistics.fmean(r.completion_rate for r in runs),
                cheater_wins=statistics.fmean(r.cheater_wins for r in runs),
                deadline_misses=statistics.fmean(r.deadline_misses for r in runs),
                cost_per_completed=Spread.of([r.cost_per_completed for r in runs]).mean,
            )
        )
        if progress is not None:
            progress(done, len(grid))
    return sorted(rows, key=lambda r: (-round(r.objective.mean, 9), r.cost_per_completed))


def with_weights(params: Params, weights: Sequence[int]) -> Params:
    """``params`` with the four score weights replaced (they must sum to 10 000)."""
    if len(weights) != len(WEIGHT_NAMES):
        raise MarketConfigError(f"give {len(WEIGHT_NAMES)} weights, got {len(weights)}")
    try:
        return params.with_changes(**dict(zip(WEIGHT_NAMES, weights, strict=True)))
    except ValueError as exc:
        raise MarketConfigError(str(exc)) from None


__all__ = [
    "LOWEST_PRICE",
    "METRICS",
    "OBJECTIVE",
    "POLICIES",
    "SCORED",
    "GridRow",
    "JobClass",
    "MarketConfigError",
    "MarketResult",
    "RunMetrics",
    "Scenario",
    "SolverProfile",
    "Spread",
    "compare",
    "default_scenario",
    "gini",
    "grid_for",
    "objective",
    "search_weights",
    "seed_range",
    "simulate",
    "weight_grid",
    "with_weights",
]

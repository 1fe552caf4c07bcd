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
                       in every run; others depend on the sample (see ``services.sim.detection``).
    caught by          what decided the game: the referee's one-step re-execution, its leaf-0
                       check, a missed move deadline, or a ledger rule followed by a deadline.

Expected values are computed from the knobs by the catalogue's builders
(``perturb_step(step=s)`` expects s), never copied from a run. ``SCENARIOS`` covers every
catalogue entry: cheating solvers against honest verifiers, cheating verifiers against an honest
solver, and all-honest.

The package: ``model`` (scenarios and results as data), ``runner`` (``run_scenario`` and the
outcome read back from the ledger) and ``catalogue`` (the builders and ``SCENARIOS``); their
public names are re-exported here.
"""

from __future__ import annotations

from services.sim.scenarios.catalogue import (
    SCENARIOS,
    accomplice_challenger,
    adaptive,
    fake_leaf,
    false_challenger,
    fewer_steps,
    griefer,
    honest,
    lazy_replay,
    lazy_verifier_alone,
    lazy_verifier_with_honest,
    lie_at_midpoint,
    midpoints,
    no_training,
    perturb_from,
    perturb_step,
    rewrite_history,
    scenario_named,
    segment_of,
    stall_dispute,
    stalling_challenger,
    withhold_data,
    withhold_then_publish,
    wrong_data_order,
    wrong_learning_rate,
)
from services.sim.scenarios.model import (
    ANY,
    BASE_SPEC,
    CHEATERS,
    CONSISTENCY,
    DEFAULT_TERMS,
    HONEST_SOLVER_PATH,
    HONEST_VERIFIER_PATH,
    INVALID_PRESTATE,
    LEAF_ZERO,
    NONE,
    ONE_STEP,
    TRAINING_DEADLINE,
    VERIFIERS,
    Expected,
    JobOutcome,
    Rejection,
    Scenario,
    ScenarioResult,
    StrategyRef,
    bad_verifier,
    cheater,
    deadline,
    honest_solver,
    honest_verifier,
    spec_for,
)
from services.sim.scenarios.runner import (
    RecordingClient,
    classify,
    run_scenario,
)

__all__ = [
    "ANY",
    "BASE_SPEC",
    "CHEATERS",
    "CONSISTENCY",
    "DEFAULT_TERMS",
    "HONEST_SOLVER_PATH",
    "HONEST_VERIFIER_PATH",
    "INVALID_PRESTATE",
    "LEAF_ZERO",
    "NONE",
    "ONE_STEP",
    "SCENARIOS",
    "TRAINING_DEADLINE",
    "VERIFIERS",
    "Expected",
    "JobOutcome",
    "RecordingClient",
    "Rejection",
    "Scenario",
    "ScenarioResult",
    "StrategyRef",
    "accomplice_challenger",
    "adaptive",
    "bad_verifier",
    "cheater",
    "classify",
    "deadline",
    "fake_leaf",
    "false_challenger",
    "fewer_steps",
    "griefer",
    "honest",
    "honest_solver",
    "honest_verifier",
    "lazy_replay",
    "lazy_verifier_alone",
    "lazy_verifier_with_honest",
    "lie_at_midpoint",
    "midpoints",
    "no_training",
    "perturb_from",
    "perturb_step",
    "rewrite_history",
    "run_scenario",
    "scenario_named",
    "segment_of",
    "spec_for",
    "stall_dispute",
    "stalling_challenger",
    "withhold_data",
    "withhold_then_publish",
    "wrong_data_order",
    "wrong_learning_rate",
]

"""The catalogue: one builder per attack, with the expected outcome computed from its knobs, and
``SCENARIOS``, every entry played by the adversarial suite and the report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from contracts_sim.dispute import bisection_midpoint
from contracts_sim.records import Phase
from protocol.spec import JobSpec
from services.sim.network import JobTerms
from services.sim.scenarios.model import (
    ANY,
    CONSISTENCY,
    DEFAULT_TERMS,
    LEAF_ZERO,
    NONE,
    ONE_STEP,
    VERIFIERS,
    Expected,
    Scenario,
    StrategyRef,
    bad_verifier,
    cheater,
    deadline,
    honest_solver,
    honest_verifier,
    spec_for,
)
from services.strategies import cheaters

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
        Expected(solver_slashed=True, located_step=None, caught_by=deadline(Phase.PUBLISH_DATA)),
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
        expected = Expected(solver_slashed=True, caught_by=deadline(Phase.POST_MIDPOINT))
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
    phase = Phase.CHOOSE_CHILD if segment is None else Phase.RESPOND_MIDPOINT
    located, caught = None, deadline(phase)
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

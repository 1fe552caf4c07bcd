"""The threat model: what each catalogue cheat corrupts and what it saves, for one job spec.

The economics of deterrence (``protocol.economics``; docs/protocol.md, "Economics") needs two
numbers per cheat:

    c   cheated segments — segments whose committed pre-state does not re-execute to their
        committed post-state, or whose data is withheld. A verifier that samples any of them
        catches the cheat; one that samples none of them attests.
    s   saved fraction — the share of the job's training work the cheat skips; its gain is
        s · payment. Sabotage (a flipped bit, a wrong learning rate) saves nothing: s = 0.

Some cheats are not a matter of sampling at all: a rewritten history is refused by the ledger's
consistency check whatever the verifiers sample, a false or stalling challenger loses its bond
to the referee or to its deadline, and a lazy verifier is invisible to the protocol (it is why a
job has several independent verifiers). ``Threat.caught`` says which.

The numbers follow each strategy's knobs and their defaults; ``tests/adversarial`` checks ``c``
against what a verifier that samples every segment actually finds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocol.spec import JobSpec
from services.agents.strategy import SolverStrategy, Strategy, VerifierStrategy
from services.strategies import catalogue, cheaters, verifiers

SAMPLING = "sampling"
"""Caught when a verifier's sample includes a cheated segment (probability from §5)."""
LEDGER = "ledger"
"""Caught by a ledger rule whatever the sample (P = 1)."""
BOND = "bond"
"""A cheating challenger: the referee or a deadline takes its bond (P = 1)."""
FORCED_ERRORS = "forced errors"
"""A lazy attester: caught when its sample holds a forced error it vouched for
(``protocol.forced_errors``), with probability 1 - (1 - f)^k on each job."""
UNDETECTED = "undetected"
"""Not observable by the protocol (mitigated by independent verifiers)."""


@dataclass(frozen=True)
class Threat:
    name: str
    role: str
    cheated_segments: int | None  # c; None where sampling plays no part
    saved_fraction: float  # s, in [0, 1]
    caught: str  # SAMPLING, LEDGER, BOND, FORCED_ERRORS or UNDETECTED
    note: str = ""


def _solver(
    strategy: Strategy, spec: JobSpec, c: int | None, s: float, note: str, caught: str = SAMPLING
) -> Threat:
    return Threat(strategy.name, "solver", c, min(1.0, max(0.0, s)), caught, note)


def _segments_from_step(spec: JobSpec, first_step: int) -> int:
    """How many segments contain a step >= ``first_step`` (each re-executes wrongly)."""
    return spec.num_segments - first_step // spec.checkpoint_interval


def _no_training(st: Strategy, spec: JobSpec) -> Threat:
    return _solver(st, spec, spec.num_segments, 1.0, "no training at all: every segment is wrong")


def _fewer_steps(st: Strategy, spec: JobSpec) -> Threat:
    first = int(spec.steps * float(st.knob("fraction", 0.5)))
    note = f"stops training at step {first}"
    return _solver(st, spec, _segments_from_step(spec, first), 1 - first / spec.steps, note)


def _perturb_step(st: Strategy, spec: JobSpec) -> Threat:
    assert isinstance(st, cheaters.PerturbStep)
    step = st.tampered_step(spec)
    note = f"one bit after step {step}; later segments re-execute from the lie (sabotage)"
    return _solver(st, spec, 1, 0.0, note)


def _perturb_from(st: Strategy, spec: JobSpec) -> Threat:
    first = int(st.knob("step", spec.steps // 2))
    note = f"a deviation at every step from {first} on; s bounds a cheaper kernel's saving"
    return _solver(st, spec, _segments_from_step(spec, first), 1 - first / spec.steps, note)


def _everywhere_wrong(st: Strategy, spec: JobSpec) -> Threat:
    return _solver(st, spec, spec.num_segments, 0.0, "every segment is wrong; no work saved")


def _lazy_replay(st: Strategy, spec: JobSpec) -> Threat:
    first = (int(st.knob("leaf", spec.num_leaves // 2)) - 1) * spec.checkpoint_interval
    note = f"no work from step {first} on"
    return _solver(st, spec, _segments_from_step(spec, first), 1 - first / spec.steps, note)


def _rewrite_history(st: Strategy, spec: JobSpec) -> Threat:
    note = "the ledger refuses a root that does not extend the last one; the training deadline"
    return _solver(st, spec, None, 0.0, note + " slashes", caught=LEDGER)


def _fake_leaf(st: Strategy, spec: JobSpec) -> Threat:
    leaf = int(st.knob("leaf", spec.num_leaves // 2))
    if leaf == 0:
        note = "commit_final recomputes state 0 and refuses the root; the training deadline"
        return _solver(st, spec, None, 0.0, note + " slashes", caught=LEDGER)
    # The segment ending at the leaf re-executes to another hash; the one starting there has no
    # blob that hashes to the fabricated entry (withheld).
    c = 2 if 0 < leaf < spec.num_segments else 1
    return _solver(st, spec, c, 0.0, f"fabricated entry at leaf {leaf}")


def _withhold_data(st: Strategy, spec: JobSpec) -> Threat:
    what = st.knob("what", "all")
    note = f"withholds {what}: any sampled segment lacks its data"
    return _solver(st, spec, spec.num_segments, 0.0, note)


def _one_bad_segment(st: Strategy, spec: JobSpec) -> Threat:
    return _solver(st, spec, 1, 0.0, "one perturbed step, then misplays the dispute (sabotage)")


def _adaptive(st: Strategy, spec: JobSpec) -> Threat:
    assert isinstance(st, cheaters.AdaptiveCheater)
    c = len(st.cheated_segments(spec))
    note = "cheats in c segments; s = c/m models skipping their work"
    return _solver(st, spec, c, c / spec.num_segments, note)


def _challenger(st: Strategy, spec: JobSpec) -> Threat:
    note = "challenges a correct solver: loses its bond to the referee or a deadline"
    return Threat(st.name, "verifier", None, 0.0, BOND, note)


def _lazy_verifier(st: Strategy, spec: JobSpec) -> Threat:
    note = "attests without re-executing: forfeits its bond when it vouched for a forced error"
    return Threat(st.name, "verifier", None, 0.0, FORCED_ERRORS, note)


FOOTPRINTS: dict[type[Strategy], Callable[[Strategy, JobSpec], Threat]] = {
    cheaters.NoTraining: _no_training,
    cheaters.FewerSteps: _fewer_steps,
    cheaters.PerturbStep: _perturb_step,
    cheaters.PerturbFrom: _perturb_from,
    cheaters.WrongDataOrder: _everywhere_wrong,
    cheaters.WrongLearningRate: _everywhere_wrong,
    cheaters.LazyReplay: _lazy_replay,
    cheaters.RewriteHistory: _rewrite_history,
    cheaters.FakeLeaf: _fake_leaf,
    cheaters.WithholdData: _withhold_data,
    cheaters.StallDispute: _one_bad_segment,
    cheaters.LieAtMidpoint: _one_bad_segment,
    cheaters.AdaptiveCheater: _adaptive,
    verifiers.FalseChallenger: _challenger,
    verifiers.StallingChallenger: _challenger,
    verifiers.Griefer: _challenger,
    verifiers.LazyVerifier: _lazy_verifier,
}
"""Catalogue class -> its footprint on a spec (honest strategies have none)."""


def threat_of(strategy: Strategy, spec: JobSpec) -> Threat:
    """The footprint of ``strategy`` (with its knobs) on a job of ``spec``."""
    try:
        footprint = FOOTPRINTS[type(strategy)]
    except KeyError:
        raise ValueError(f"no threat model for {type(strategy).__qualname__}") from None
    return footprint(strategy, spec)


def catalogue_threats(spec: JobSpec) -> list[Threat]:
    """Every cheat in the catalogue, with default knobs, on ``spec`` (catalogue order)."""
    honest = (SolverStrategy, VerifierStrategy)
    return [threat_of(cls(), spec) for cls in catalogue() if cls not in honest]

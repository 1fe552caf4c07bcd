"""Strategies: the pluggable behaviour of agents — how cheaters are built.

An agent does the protocol's bookkeeping (watching the chain, signing, storing blobs, computing
the honest move) and asks its strategy at each decision point. The base classes here *are* the
honest strategies; a cheater subclasses one and overrides hooks. Strategies are loaded by dotted
path (``package.module:Class``), optionally with knobs (``Class`` keyword arguments), so anyone
can write one outside this project. See ``docs/strategies.md``.

Solver hooks, in the order a job meets them::

    bid(job)                           price to bid, or None to skip the job
    initial_state(spec, honest)        state 0 the solver starts from
    train_step(spec, state, i)         the state after step i (tamper here)
    leaf_entry(job, leaf, entry, past) the entry committed for checkpoint ``leaf``
    committed_entries(job, entries)    the leaves progress and final roots are computed over
    serve_leaves(job, entries)         the leaf list served to verifiers (None: withhold)
    serve_blob(job, entry, blob)       a checkpoint blob served (None: withhold)
    answer_dispute(dispute, honest)    a dispute move (None: stall)

Verifier hooks::

    verify(job)                        whether to check this job at all
    reexecute(job)                     False: skip re-execution and trust the solver (lazy)
    verdict(job, honest)               the verdict: attest, challenge (with evidence) or skip
    answer_dispute(dispute, honest)    a dispute move (None: stall)
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from contracts_sim.transactions import ChallengeBody
from protocol.exact import State, step
from protocol.spec import JobSpec
from services.agents.moves import Move
from services.agents.views import DisputeView, JobView
from services.errors import StrategyError

__all__ = [
    "DisputeView",
    "JobView",
    "SolverStrategy",
    "Strategy",
    "StrategyError",
    "Verdict",
    "VerifierStrategy",
]


@dataclass(frozen=True)
class Verdict:
    """A verifier's conclusion about a job."""

    action: str  # "attest", "challenge" or "skip"
    reason: str = ""
    challenge_body: ChallengeBody | None = None
    first_bad_leaf: int | None = None
    more_challenges: tuple[ChallengeBody, ...] = ()
    """Further fast-path challenges, one per other bad segment of the sample: on a job with
    forced errors any bad segment may be a trap, so each is challenged
    (``protocol.forced_errors``)."""

    ATTEST: ClassVar[str] = "attest"
    CHALLENGE: ClassVar[str] = "challenge"
    SKIP: ClassVar[str] = "skip"


class Strategy:
    """Common base: a name, documented knobs, and construction from knob keyword arguments."""

    name: ClassVar[str] = "honest"
    role: ClassVar[str] = "solver"
    description: ClassVar[str] = "Follows the protocol."
    knobs: ClassVar[dict[str, str]] = {}
    """Knob name -> description; each knob is a keyword argument of ``__init__``."""
    common_knobs: ClassVar[dict[str, str]] = {}
    """Knobs every strategy of the role accepts."""

    def __init__(self, **knobs: Any) -> None:
        known = {**self.common_knobs, **self.knobs}
        unknown = sorted(set(knobs) - set(known))
        if unknown:
            raise StrategyError(
                f"{type(self).__name__}: unknown knob(s) {unknown}; known: {sorted(known)}"
            )
        self.settings = knobs

    def knob(self, name: str, default: Any) -> Any:
        return self.settings.get(name, default)

    def answer_dispute(self, dispute: DisputeView, honest: Move | None) -> Move | None:
        """The move to send in ``dispute`` given the honest one (None: stall)."""
        return honest

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "role": cls.role,
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "description": inspect.cleandoc(cls.description),
            "knobs": {**cls.common_knobs, **cls.knobs},
        }


class SolverStrategy(Strategy):
    """The honest solver. Every hook returns what the protocol asks for."""

    role = "solver"
    description = "Trains exactly, commits every checkpoint, serves all data, answers every move."
    common_knobs = {"price_bps": "bid price in basis points of the payment (default 10000)"}

    def bid(self, job: JobView) -> int | None:
        return max(1, job.payment * int(self.knob("price_bps", 10_000)) // 10_000)

    def initial_state(self, spec: JobSpec, honest: State) -> State:
        return honest

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        return step(spec, state, i)

    def leaf_entry(self, job: JobView, leaf: int, entry: bytes, past: list[bytes]) -> bytes:
        return entry

    def committed_entries(self, job: JobView, entries: list[bytes]) -> list[bytes]:
        return entries

    def serve_leaves(self, job: JobView, entries: list[bytes]) -> list[bytes] | None:
        return entries

    def serve_blob(self, job: JobView, entry: bytes, blob: bytes) -> bytes | None:
        return blob


class VerifierStrategy(Strategy):
    """The honest verifier: re-executes its sample, attests or challenges, plays to the end."""

    role = "verifier"
    description = "Re-executes its sampled segments; attests or challenges; plays every move."

    def verify(self, job: JobView) -> bool:
        return True

    def reexecute(self, job: JobView) -> bool:
        return True

    def verdict(self, job: JobView, honest: Verdict) -> Verdict:
        return honest


def _parse_knob(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def load_solver_strategy(path: str | None) -> SolverStrategy:
    """The solver strategy at ``path``; the honest one when ``path`` is None."""
    strategy = load_strategy(path, "solver") if path else SolverStrategy()
    assert isinstance(strategy, SolverStrategy)
    return strategy


def load_verifier_strategy(path: str | None) -> VerifierStrategy:
    """The verifier strategy at ``path``; the honest one when ``path`` is None."""
    strategy = load_strategy(path, "verifier") if path else VerifierStrategy()
    assert isinstance(strategy, VerifierStrategy)
    return strategy


def load_strategy(path: str, role: str, knobs: dict[str, Any] | None = None) -> Strategy:
    """Instantiate ``package.module:Class`` (a subclass of the ``role``'s base) with knobs.

    ``path`` may carry knobs itself: ``pkg.mod:Class?step=7&bit=0``.
    """
    knobs = dict(knobs or {})
    if "?" in path:
        path, query = path.split("?", 1)
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            knobs[key] = _parse_knob(value)
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise StrategyError(f"strategy {path!r}: expected 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyError(f"strategy {path!r}: cannot import {module_name!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    base = SolverStrategy if role == "solver" else VerifierStrategy
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise StrategyError(f"strategy {path!r}: not a {base.__name__} subclass")
    return cls(**knobs)

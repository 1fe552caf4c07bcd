"""Typed views of what the chain answers: jobs, disputes, accounts and parameters.

The node (and ``LocalChainClient``) serve ledger records as JSON (``services.node.views``:
``contracts_sim.codec.to_json_value`` of the record, plus a few derived fields). An agent decodes
each answer once, here, back into the ledger's own records (``Job``, ``Dispute``, ``Account``,
``Params``), carrying its enums (``JobStatus``, ``DisputeStatus``, ``Phase``, ``Party``), and
reads nothing else. Decoding is strict: an answer that is not such a record raises
``MalformedAnswerError`` (a ``ProofNetError``, so an agent's isolation treats it as any other
failure of that job), never a ``KeyError`` deep inside a decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from contracts_sim.blocks import ChainEvent
from contracts_sim.codec import from_json_value
from contracts_sim.params import Params
from contracts_sim.records import (
    Account,
    Dispute,
    DisputeStatus,
    Job,
    JobStatus,
    Party,
    Phase,
    Resolution,
)
from protocol.errors import ProofNetError
from protocol.spec import JobSpec, parse_spec
from protocol.types import Address, Height
from services.errors import MalformedAnswerError

R = TypeVar("R")


def decode_record(cls: type[R], answer: Any, what: str) -> R:
    """``answer`` decoded as the record ``cls``: its fields exactly (other fields, such as
    those the node derives, dropped)."""
    if not isinstance(answer, dict):
        raise MalformedAnswerError(f"{what}: expected an object, got {type(answer).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        record = from_json_value(cls, {k: v for k, v in answer.items() if k in known}, what)
    except ProofNetError as exc:  # the codec names where: "what.field: why"
        raise MalformedAnswerError(exc.message) from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedAnswerError(f"{what}: {exc}") from exc
    assert isinstance(record, cls)
    return record


@dataclass(frozen=True)
class JobView:
    """A job as the chain holds it (``record``) and its parsed spec.

    The properties name what strategies and agents read most; anything else is on ``record``.
    """

    record: Job
    spec: JobSpec

    @property
    def job_id(self) -> str:
        return self.record.job_id

    @property
    def submitter(self) -> Address:
        return self.record.submitter

    @property
    def payment(self) -> int:
        return int(self.record.payment)

    @property
    def min_stake(self) -> int:
        return int(self.record.min_stake)

    @property
    def sample_count(self) -> int:
        return self.record.sample_count

    @property
    def num_leaves(self) -> int:
        return self.record.num_leaves

    @property
    def status(self) -> JobStatus:
        return self.record.status

    @property
    def solver(self) -> Address | None:
        return self.record.solver

    def holds_bid_of(self, address: str) -> bool:
        """The job's bid list holds a bid of ``address``."""
        return any(bid.solver == address for bid in self.record.bids)


@dataclass(frozen=True)
class DisputeView:
    """A dispute as the chain holds it (``record``), with its job's spec when known."""

    record: Dispute
    spec: JobSpec | None = None

    @property
    def dispute_id(self) -> str:
        return self.record.dispute_id

    @property
    def job_id(self) -> str:
        return self.record.job_id

    @property
    def status(self) -> DisputeStatus:
        return self.record.status

    @property
    def phase(self) -> Phase:
        return self.record.phase

    @property
    def turn(self) -> Party:
        return self.record.turn

    @property
    def deadline(self) -> int:
        return int(self.record.deadline)

    @property
    def resolution(self) -> Resolution:
        """What decided it, once closed (``Resolution.NONE`` while open)."""
        return self.record.resolution


def decode_job(answer: Any) -> JobView:
    """A job answer (``get_job``, an element of ``list_jobs``) as a ``JobView``."""
    record = decode_record(Job, answer, "job")
    try:
        spec = parse_spec(record.spec)
    except ProofNetError as exc:
        raise MalformedAnswerError(f"job {record.job_id}: its spec: {exc}") from exc
    return JobView(record, spec)


@dataclass(frozen=True)
class _History:
    history: tuple[ChainEvent, ...]


def decode_history(answer: Any) -> tuple[ChainEvent, ...]:
    """The event history of a job detail answer (``get_job``'s ``history``)."""
    return decode_record(_History, answer, "job detail").history


@dataclass(frozen=True)
class DisputeSummary:
    """A dispute in brief, as a job detail answer lists it (``services.node.views``)."""

    dispute_id: str
    challenger: Address
    status: DisputeStatus
    phase: Phase
    turn: Party
    deadline: Height
    winner: Party
    resolution: Resolution


@dataclass(frozen=True)
class _Detail:
    dispute_summaries: tuple[DisputeSummary, ...]
    history: tuple[ChainEvent, ...]


E = TypeVar("E", bound="EventRecord")


@dataclass(frozen=True)
class JobDetail:
    """A job's whole lifecycle (``get_job``): the job, its disputes in brief, its events."""

    job: JobView
    dispute_summaries: tuple[DisputeSummary, ...]
    history: tuple[ChainEvent, ...]

    def events(self, cls: type[E]) -> list[E]:
        """The events of ``cls.KIND`` in the history, oldest first, decoded as ``cls``."""
        return decode_events(cls, self.history)


def decode_job_detail(answer: Any) -> JobDetail:
    """A job detail answer (``get_job``) as a ``JobDetail``."""
    detail = decode_record(_Detail, answer, "job detail")
    return JobDetail(decode_job(answer), detail.dispute_summaries, detail.history)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRecord:
    """What an event of kind ``KIND`` says (its data; the fields a reader needs)."""

    KIND: ClassVar[str] = ""


@dataclass(frozen=True)
class BidEvicted(EventRecord):
    """A better bid evicted ``solver``'s."""

    KIND: ClassVar[str] = "bid_evicted"
    solver: Address


@dataclass(frozen=True)
class DisputeResolved(EventRecord):
    KIND: ClassVar[str] = "dispute_resolved"
    dispute_id: str
    job_id: str
    winner: Address
    loser: Address
    winner_role: Party
    loser_role: Party
    located_step: int | None
    slashed: int
    reason: str
    resolution: Resolution


@dataclass(frozen=True)
class JobSettled(EventRecord):
    KIND: ClassVar[str] = "job_settled"
    job_id: str
    solver: Address
    price: int


@dataclass(frozen=True)
class Slashed(EventRecord):
    """A job's solver was slashed: ``amount`` taken, ``rewards`` paid, ``burned`` burned."""

    KIND: ClassVar[str] = "slashed"
    job_id: str
    address: Address
    amount: int
    reward: int
    burned: int
    rewards: dict[str, int]
    reason: str
    resolution: Resolution


@dataclass(frozen=True)
class BondForfeited(EventRecord):
    """A challenger (``address``) lost the bond ``amount``."""

    KIND: ClassVar[str] = "bond_forfeited"
    address: Address
    amount: int


def decode_event(cls: type[E], event: ChainEvent) -> E:
    """``event``'s data as ``cls`` (an event of ``cls.KIND``)."""
    if event.kind != cls.KIND:
        raise MalformedAnswerError(f"event {event.id}: a {event.kind}, not a {cls.KIND}")
    return decode_record(cls, event.data, f"{cls.KIND} event")


def decode_events(cls: type[E], events: Iterable[ChainEvent]) -> list[E]:
    """The events of ``cls.KIND`` among ``events``, in order, decoded as ``cls``."""
    return [decode_event(cls, event) for event in events if event.kind == cls.KIND]


@dataclass(frozen=True)
class EventSubject:
    """The job and the dispute an event names, if any (ids that are not strings: none)."""

    job_id: str | None
    dispute_id: str | None


def event_subject(event: ChainEvent) -> EventSubject:
    """What ``event`` is about (``job_id``, ``dispute_id`` in its data)."""
    strings = {k: v for k, v in event.data.items() if isinstance(v, str)}
    return EventSubject(strings.get("job_id"), strings.get("dispute_id"))


def answer_id(answer: Any, name: str) -> str | None:
    """The id ``name`` (``job_id``, ``dispute_id``) of an answer kept undecoded (the
    watcher's cache), or None if it has none."""
    value = answer.get(name) if isinstance(answer, dict) else None
    return value if isinstance(value, str) else None


def required_answer_id(answer: Any, name: str) -> str:
    """``answer_id``, or a ``MalformedAnswerError`` if the answer has no such id."""
    value = answer_id(answer, name)
    if value is None:
        raise MalformedAnswerError(f"answer: {name} must be a string")
    return value


def decode_dispute(answer: Any, job: JobView | None = None) -> DisputeView:
    """A dispute answer (``get_dispute``, an element of ``list_disputes``) as a view."""
    spec = job.spec if job is not None else None
    return DisputeView(decode_record(Dispute, answer, "dispute"), spec)


def decode_account(answer: Any) -> Account:
    """An account answer (``get_account``) as the ledger's ``Account`` record."""
    return decode_record(Account, answer, "account")


def decode_params(answer: Any) -> Params:
    """The chain's parameters (``params()``) as the ledger's ``Params`` record."""
    if not isinstance(answer, dict):
        raise MalformedAnswerError("params: expected an object")
    try:
        return Params.from_json(answer)
    except (ValueError, TypeError) as exc:
        raise MalformedAnswerError(f"params: {exc}") from exc

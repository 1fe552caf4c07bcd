"""Event-driven reads: an agent's view of the chain, kept up to date from ``/events``.

An agent used to re-read every job, its account and the head height on every tick. A
``ChainWatcher`` follows the event stream instead and reads only what the events say changed::

    watcher = ChainWatcher(client, address)
    watcher.wait(timeout)        # long-poll: True once new events arrived (False: timeout)
    watcher.height               # the head height as of the last block event (no read)
    watcher.jobs()               # every job, as the node's JSON view (``GET /jobs``)
    watcher.job(job_id)          # one job's view, or None
    watcher.disputes(job_id)     # the job's disputes (``GET /disputes?job_id=``)
    watcher.account()            # this agent's account (``GET /accounts/{address}``)
    watcher.sample(job_id, verifier)  # a verifier's sample (read once: it never changes)
    watcher.invalidate(job_id=None, account=False)   # the agent sent something

What is read, and when:

- The first read of anything starts the cursor at the chain's last event (``GET /health``)
  and reads every job once (``GET /jobs``).
- An event naming a job (``job_id``) marks that job stale, and its disputes; an event naming
  this agent's address anywhere in its data, or naming a job that mentions the address (its
  bid, its assignment, its attestation...), marks the account stale. An event that names no
  job, no dispute and no address could touch anything: everything is marked stale. A
  ``block`` event only moves the height.
- Stale records are read again when asked for, not when the event arrives: the stale jobs in
  one ``GET /jobs?job_id=…`` request, a job's disputes in one ``GET /disputes?job_id=``, the
  account in one ``GET /accounts/{address}``. A record nobody asks for is never read.
- A gap in event ids (the node pruned events), or a chain started over (its last event
  before the cursor, or another block at the height of the last block event: checked when the
  stream reconnects and after a long wait with nothing) drops the cache and fills it again.

``blocks_left`` of a cached open dispute is recomputed from ``height``: the one field of the
views that moves with the clock rather than with an event.

Two ways to drive it. Push (``services.agents.runner``): the loop calls ``wait`` between
ticks, and reads between two waits see the chain as of the last batch of events. Over HTTP
the events come from one ``GET /events/stream`` (server-sent events) read by a background
thread, reconnected from the cursor when it breaks; ``stream=False``, or a client without
``stream_events`` (``LocalChainClient``), long-polls ``GET /events`` instead. Pull
(tests that produce blocks themselves and tick agents by hand, never calling ``wait``): each
read first catches up with the events so far (``sync``), so a tick always sees the chain's
head. Either way a record is read from the node at most once per batch of events naming it.

The JSON returned is the watcher's cached copy (one level copied): callers decode it, they do
not mutate it. ``job`` returns the list view (``GET /jobs``), not ``GET /jobs/{id}``'s detail:
no ``history`` or ``dispute_summaries``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

from contracts_sim.blocks import BLOCK_EVENT, ChainEvent
from contracts_sim.crypto import is_address
from services.agents.views import answer_id, event_subject, required_answer_id
from services.client import ChainClient, ChainHead, JsonObject
from services.errors import MalformedAnswerError

log = logging.getLogger("proofnet.watch")

EVENTS_PAGE: Final = 1000
"""Events asked for per request (the node's largest page)."""
STREAM_HEARTBEAT: Final = 2.0
"""Seconds the node's event stream may stay silent before it sends a keep-alive (twice this
with nothing at all: the stream is broken off and reconnected, ``stream_events``)."""
RECONNECT_MAX: Final = 2.0
"""The longest pause before reconnecting a broken event stream (doubling from 0.1 s)."""
_RESET: Final = object()
"""Queued by the stream reader when the chain is behind its cursor (the chain started over)."""
BLOCK_REST: Final = 1.0
"""How long ``wait`` waits for the rest of a block whose first events it has (they are sent
together: this bounds only a stream that broke in the middle of a block)."""
RESET_CHECK_AFTER: Final = 1.0
"""A long-poll at least this long that brings nothing (a live chain seals a block every
``block_time``) is followed by one ``/health`` read: has the chain started over?"""


def mentions(value: Any, address: str) -> bool:
    """Whether ``address`` occurs as a string anywhere in ``value`` (JSON: dicts, lists)."""
    if isinstance(value, str):
        return value.lower() == address
    if isinstance(value, dict):
        return any(mentions(v, address) for v in value.values())
    if isinstance(value, list | tuple):
        return any(mentions(v, address) for v in value)
    return False


class ChainWatcher:
    """One agent's cache of the jobs, disputes and account it reads, driven by events."""

    def __init__(self, client: ChainClient, address: str, *, stream: bool = True) -> None:
        self.client = client
        self.address = address.lower()
        self.stream = stream and callable(getattr(client, "stream_events", None))
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.RLock()
        self._cursor: int | None = None  # the last event id applied; None: not started
        self._height = 0
        self._block: tuple[int, str] | None = None  # the last block event applied: height, hash
        self._pushed = False  # ``wait`` has been called: reads do not catch up themselves
        self._jobs: dict[str, JsonObject] = {}
        self._stale_jobs: set[str] = set()
        self._disputes: dict[str, list[JsonObject]] = {}  # job id -> its disputes
        self._account: JsonObject | None = None
        self._account_after_block = False  # the agent sent a transaction: re-read after a block
        self._samples: dict[tuple[str, str], list[int]] = {}
        self._jobs_after_block: set[str] = set()
        self.reads: Counter[str] = Counter()  # records read from the node, by kind
        self.events_seen = 0

    # --- driving --------------------------------------------------------------------------
    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for new events (a long-poll of ``/events``) and
        apply them; True if any arrived. From the first call on, reads no longer catch up by
        themselves: they see the chain as of the last ``wait``."""
        with self._lock:
            self._pushed = True
            if self._cursor is None:
                self._start()
                return True
            cursor = self._cursor
        if self.stream:
            return self._wait_stream(cursor, timeout)
        events = self.client.events_since(cursor, EVENTS_PAGE, timeout)
        self.reads["events"] += 1
        if not events:
            return timeout >= RESET_CHECK_AFTER and self._check_reset()
        with self._lock:
            self._apply(events)
        if len(events) >= EVENTS_PAGE:
            self.sync()  # a full page: fetch the rest now
        return True

    def _wait_stream(self, cursor: int, timeout: float) -> bool:
        """``wait`` on the event stream: what the reader thread queued, up to ``timeout``."""
        if self._reader is None or not (self._reader.is_alive() or self._closed.is_set()):
            if self._reader is not None:
                log.warning("the event stream reader stopped: starting it again")
            self._reader = threading.Thread(
                target=self._read_stream, args=(cursor,), name="event-stream", daemon=True
            )
            self._reader.start()
        try:
            items = [self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()]
        except queue.Empty:
            # Nothing for a while on a chain that seals a block every block_time: one /health
            # read tells a silent (half-open, stuck) stream from an idle chain.
            return timeout >= RESET_CHECK_AFTER and self._check_reset()
        # A block's events arrive together and end with its block event: take the whole
        # block, so that one wake sees all it changed (a broken stream ends the wait early).
        while not _ends_a_block(items[-1]):
            try:
                items.append(self._inbox.get(timeout=BLOCK_REST))
            except queue.Empty:
                break
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            events: list[ChainEvent] = []
            for item in items:
                if item is _RESET:
                    self._apply(events)
                    events = []
                    self._restart()
                else:
                    events.append(item)
            self._apply(events)
        return True

    def _restart(self) -> None:
        """Forget the cursor (unstarted until ``_start`` succeeds) and fill the cache again."""
        self._cursor, self._height = None, 0
        self._start()

    def _read_stream(self, since: int) -> None:
        """The reader thread: queue every event of ``GET /events/stream``; reconnect from the
        last event after a break, first checking the chain has not started over (behind the
        cursor, or another block at the height of the last one queued)."""
        stream_events: Any = getattr(self.client, "stream_events")  # noqa: B009 (not in ChainClient)
        cursor, delay, block = since, 0.1, None
        while not self._closed.is_set():
            try:
                for event in stream_events(cursor, STREAM_HEARTBEAT):
                    if self._closed.is_set():
                        return
                    self._inbox.put(event)
                    cursor, delay = event.id, 0.1
                    block = _block_of(event) or block
            except Exception as exc:  # any break (RecursionError, httpx.StreamError...)
                log.warning("the event stream broke (%r); reconnecting", exc)
            if self._closed.wait(delay):
                return
            delay = min(delay * 2, RECONNECT_MAX)
            try:
                head = self.client.chain_head()
                self.reads["head"] += 1
                restarted = head.last_event_id < cursor or self._replaced(block, head)
            except Exception:
                continue
            if restarted:
                log.warning("the chain started over (event cursor %d): reloading", cursor)
                self._inbox.put(_RESET)
                cursor, block = head.last_event_id, None

    def close(self) -> None:
        """Stop the stream reader (it ends at its next event or keep-alive)."""
        self._closed.set()

    def sync(self) -> None:
        """Apply every event so far without waiting (at least one ``/events`` request)."""
        with self._lock:
            if self._cursor is None:
                self._start()
                return
            while True:
                events = self.client.events_since(self._cursor, EVENTS_PAGE, 0.0)
                self.reads["events"] += 1
                if events:
                    self._apply(events)
                if len(events) < EVENTS_PAGE:
                    return

    def _catch_up(self) -> None:
        """Before a read in pull mode (``wait`` never called): apply the events so far."""
        if not self._pushed:
            self.sync()
        elif self._cursor is None:
            self._start()

    def _start(self) -> None:
        """Start the cursor at the chain's last event and read every job once. Both are read
        before either is kept: a read that fails leaves the cursor where it was (None: not
        started), so the next read starts again rather than skip the jobs it never saw."""
        head = self.client.chain_head()
        self.reads["head"] += 1
        jobs = _by_id(self.client.list_jobs())
        self.reads["jobs"] += 1
        self._cursor = head.last_event_id
        self._height = max(self._height, head.height)
        self._block = None
        self._jobs = jobs
        self._stale_jobs.clear()
        self._disputes.clear()
        self._account = None

    def _check_reset(self) -> bool:
        """After a long wait with no events: if the chain is behind the cursor or has another
        block at the height of the last one applied, it started over (a new database behind
        the same URL); fill the cache again. If it is ahead, the wait missed events (a silent
        or broken stream): apply them now, and return True."""
        with self._lock:
            head = self.client.chain_head()
            self.reads["head"] += 1
            if self._cursor is None:
                return False
            if head.last_event_id < self._cursor or self._replaced(self._block, head):
                log.warning(
                    "the chain (last event %d) started over since this watcher's cursor %d: "
                    "reloading",
                    head.last_event_id,
                    self._cursor,
                )
                self._restart()
                return False
            if head.last_event_id > self._cursor:
                log.warning("the chain has events after %d the wait did not bring", self._cursor)
                self.sync()
                return True
            return False

    def _replaced(self, block: tuple[int, str] | None, head: ChainHead) -> bool:
        """Whether the chain's block at ``block``'s height is another one (one ``/blocks``
        read): a chain started over and already past the cursor."""
        if block is None or head.height < block[0]:
            return False
        self.reads["block"] += 1
        return self.client.get_block(block[0]).hash.hex() != block[1]

    # --- events ---------------------------------------------------------------------------
    def _apply(self, events: Iterable[ChainEvent]) -> None:
        for event in events:
            assert self._cursor is not None
            if event.id <= self._cursor:
                continue  # already applied (an overlapping page)
            if event.id != self._cursor + 1:
                log.warning("events %d..%d are missing: reloading", self._cursor + 1, event.id - 1)
                self._start()
                return
            self._cursor = event.id
            self.events_seen += 1
            self._height = max(self._height, int(event.height))
            if event.kind == BLOCK_EVENT:
                self._block = _block_of(event) or self._block
                self._after_block()
                continue
            self._note(event)

    def _after_block(self) -> None:
        """What the agent's own transactions may have changed, stale once a block is sealed."""
        if self._account_after_block:
            self._account, self._account_after_block = None, False
        for job_id in self._jobs_after_block:
            self._stale_jobs.add(job_id)
            self._disputes.pop(job_id, None)
        self._jobs_after_block.clear()

    def _note(self, event: ChainEvent) -> None:
        """Mark what ``event`` may have changed as stale."""
        data, subject = event.data, event_subject(event)
        job_id, dispute_id = subject.job_id, subject.dispute_id
        named_me = mentions(data, self.address)
        if named_me:
            self._account = None
        if job_id is not None:
            cached = self._jobs.get(job_id)
            if cached is not None and not named_me and mentions(cached, self.address):
                self._account = None  # a job of this agent's: its pay, bonds or stake moved
            self._stale_jobs.add(job_id)
            self._disputes.pop(job_id, None)
            return
        if dispute_id is not None:
            owners = [j for j, ds in self._disputes.items() if _holds(ds, dispute_id)]
            if owners:
                for owner in owners:
                    self._disputes.pop(owner, None)
            else:
                self._disputes.clear()
            return
        if named_me or _names_an_address(data):
            return  # an account event (transfer, stake, endpoint...) of someone else's
        self.invalidate_all()

    # --- reads ----------------------------------------------------------------------------
    @property
    def height(self) -> int:
        """The head height as of the last block event applied."""
        with self._lock:
            self._catch_up()
            return self._height

    @property
    def cursor(self) -> int | None:
        """The id of the last event applied (None before the first read)."""
        return self._cursor

    def jobs(self) -> list[JsonObject]:
        """Every job on the chain (the stale ones read again, in one request)."""
        with self._lock:
            self._catch_up()
            self._refresh_jobs()
            return [dict(job) for job in self._jobs.values()]

    def job(self, job_id: str) -> JsonObject | None:
        """One job, or None if the chain has no such job."""
        job_id = job_id.removeprefix("0x").lower()
        with self._lock:
            self._catch_up()
            if job_id in self._stale_jobs:
                self._refresh_jobs()
            job = self._jobs.get(job_id)
            return None if job is None else dict(job)

    def disputes(self, job_id: str) -> list[JsonObject]:
        """The disputes of one job (read again after an event names the job or one of them)."""
        job_id = job_id.removeprefix("0x").lower()
        with self._lock:
            self._catch_up()
            found = self._disputes.get(job_id)
            if found is None:
                found = self.client.list_disputes(job_id)
                self.reads["disputes"] += 1
                self._disputes[job_id] = found
            return [self._with_blocks_left(d) for d in found]

    def account(self) -> JsonObject:
        """This agent's account (read again after an event names it or one of its jobs, and
        after the first block following an ``invalidate(account=True)``)."""
        with self._lock:
            self._catch_up()
            if self._account is None:
                self._account = self.client.get_account(self.address)
                self.reads["account"] += 1
            return dict(self._account)

    def sample(self, job_id: str, verifier: str) -> list[int]:
        """``verifier``'s sample of ``job_id``'s segments, read once: it is fixed once its seed
        block exists (before that the node's ``sample_seed_not_ready`` error is raised, and
        the next call asks again)."""
        key = (job_id.removeprefix("0x").lower(), verifier.lower())
        with self._lock:
            found = self._samples.get(key)
        if found is None:
            found = [int(s) for s in self.client.sample(job_id, verifier)]
            with self._lock:
                self.reads["sample"] += 1
                self._samples[key] = found
        return list(found)

    def _refresh_jobs(self) -> None:
        if not self._stale_jobs:
            return
        wanted = sorted(self._stale_jobs)
        fresh = _by_id(self.client.list_jobs(job_ids=wanted))
        self.reads["jobs"] += 1
        for job_id in wanted:
            if job_id in fresh:
                self._jobs[job_id] = fresh[job_id]
            else:
                self._jobs.pop(job_id, None)
        self._stale_jobs.clear()

    def _with_blocks_left(self, dispute: JsonObject) -> JsonObject:
        copy = dict(dispute)
        if copy.get("blocks_left") is not None and isinstance(copy.get("deadline"), int):
            copy["blocks_left"] = max(int(copy["deadline"]) - self._height, 0)
        return copy

    # --- the agent's own changes ------------------------------------------------------------
    def invalidate(self, job_id: str | None = None, *, account: bool = False) -> None:
        """The agent sent a transaction about ``job_id`` and/or its account. Nothing changes
        before the transaction's block, whose events name what it changed; this re-reads
        them after that block even so (a rejected or unnamed effect still shows)."""
        with self._lock:
            if job_id is not None:
                self._jobs_after_block.add(job_id.removeprefix("0x").lower())
            if account:
                self._account_after_block = True

    def invalidate_all(self) -> None:
        """Everything cached is read again when next asked for."""
        with self._lock:
            self._stale_jobs.update(self._jobs)
            self._disputes.clear()
            self._account = None


def _block_of(event: ChainEvent) -> tuple[int, str] | None:
    """A block event's height and hash (None for any other event, or no hash)."""
    block_hash = event.data.get("hash")
    if event.kind != BLOCK_EVENT or not isinstance(block_hash, str):
        return None
    return int(event.height), block_hash


def _ends_a_block(item: Any) -> bool:
    return item is _RESET or (isinstance(item, ChainEvent) and item.kind == BLOCK_EVENT)


def _by_id(jobs: list[JsonObject]) -> dict[str, JsonObject]:
    """Jobs by id; an element without one is logged and skipped (it must not hide the rest)."""
    found: dict[str, JsonObject] = {}
    for job in jobs:
        try:
            found[required_answer_id(job, "job_id")] = job
        except MalformedAnswerError as exc:
            log.warning("a job the node listed is skipped: %s", exc)
    return found


def _holds(disputes: list[JsonObject], dispute_id: str) -> bool:
    return any(answer_id(d, "dispute_id") == dispute_id for d in disputes)


def _names_an_address(data: dict[str, Any]) -> bool:
    """Whether an event's data names an account (``0x`` and 40 hex digits)."""
    return any(is_address(v) for v in data.values())

"""What every agent shares: its key, its nonce, sending moves, funding and staking itself.

Agents are tick-driven: ``tick()`` reads the chain, decides, sends transactions and returns. A
transaction is submitted without waiting for its block; the agent's ``Wallet``
(``services.client``, the one place nonces are kept) tracks its next nonce and re-reads it
from the chain after any nonce error. A move already sent is not re-sent for a few
blocks (``INFLIGHT_BLOCKS``), so a tick that sees the chain before the move's block does not
duplicate it.

One job's failure never stops an agent's other work: each job's share of a tick runs through
``isolated``, which logs a failure with the job id, backs that job off (exponentially, in
blocks, up to ``BACKOFF_MAX_BLOCKS``) and lets the tick go on with the other jobs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts_sim.blocks import ChainEvent
from contracts_sim.crypto import PrivateKey
from contracts_sim.params import Params
from contracts_sim.records import Account, Party, Phase
from contracts_sim.transactions import (
    ClaimTimeoutBody,
    FaucetBody,
    StakeBody,
)
from protocol.errors import ProofNetError
from protocol.types import Amount
from services.agents import player
from services.agents.moves import Move
from services.agents.strategy import Strategy
from services.agents.telemetry import AgentTelemetry
from services.agents.views import (
    DisputeView,
    JobView,
    decode_account,
    decode_dispute,
    decode_history,
    decode_job,
    decode_params,
)
from services.agents.watch import ChainWatcher
from services.client import ChainClient, Wallet

INFLIGHT_BLOCKS = 3
BACKOFF_MAX_BLOCKS = 32
_LONG_ID = re.compile(r"(?:0x)?[0-9a-f]{40,64}")
AFTER_THE_WINDOW = frozenset({Phase.REVEAL_TRAP, Phase.UNSEAL})
"""Phases whose move the ledger takes only once the job's challenge window has closed."""


@dataclass(frozen=True)
class Backoff:
    """A job whose work failed ``failures`` times in a row; it is retried at ``retry_at``."""

    failures: int
    retry_at: int


class Agent:
    role = "agent"
    side = Party.NOBODY
    """The party this agent plays in disputes (``play_disputes``)."""
    strategy: Strategy

    def __init__(self, client: ChainClient, key: PrivateKey, *, name: str | None = None) -> None:
        self.client = client
        self.key = key
        self.address = key.address
        self.name = name or f"{self.role}-{self.address[2:8]}"
        self.log = logging.getLogger(f"proofnet.{self.name}")
        self.wallet = Wallet(key, client)  # its next nonce, kept locally
        self._inflight: dict[str, int] = {}
        self._params: Params | None = None
        self.sent: list[tuple[int, str]] = []  # (height, kind) of every accepted submission
        self._tick_height: int | None = None
        self.backoffs: dict[str, Backoff] = {}
        self._logged_once: set[str] = set()
        self._playing: set[str] = set()  # disputes it has played, until their outcome is logged
        self.telemetry = AgentTelemetry(self.role, self.address)
        self.watcher = ChainWatcher(client, self.address)  # every ledger read goes through it
        self.more_work = False  # set by a tick that stopped with local work left (training)

    # --- chain facts --------------------------------------------------------------------
    @property
    def params(self) -> Params:
        if self._params is None:
            self._params = decode_params(self.client.params())
        return self._params

    def height(self) -> int:
        return self.watcher.height

    def begin_tick(self) -> tuple[int, Account]:
        """Read the head height and this agent's account once; moves sent this tick use them."""
        self.more_work = False
        self._tick_height = self.height()
        return self._tick_height, self.account()

    # --- reads: every read of ledger records goes through these ------------------------------
    def account(self) -> Account:
        return decode_account(self.watcher.account())

    def jobs(self) -> list[JobView]:
        """Every job on the chain, decoded; one the agent cannot decode is logged and left out
        (one bad answer must not stop its work on the others)."""
        views = []
        for answer in self.watcher.jobs():
            try:
                views.append(decode_job(answer))
            except ProofNetError as exc:
                self.telemetry.error("job_unreadable")
                self.log.warning("a job the agent cannot read: %s", exc)
        return views

    def job(self, job_id: str) -> JobView:
        cached = self.watcher.job(job_id)  # None: no such job; get_job raises job_not_found
        return decode_job(cached if cached is not None else self.client.get_job(job_id))

    def job_history(self, job_id: str) -> tuple[ChainEvent, ...]:
        """The job's events, oldest first (``bid_evicted``, ``dispute_resolved`` ...)."""
        return decode_history(self.client.get_job(job_id))

    def disputes(self, job: JobView) -> list[DisputeView]:
        """The job's disputes, each carrying the job's spec."""
        return [decode_dispute(d, job) for d in self.watcher.disputes(job.job_id)]

    # --- sending ------------------------------------------------------------------------
    def in_flight(self, key: str) -> bool:
        """A move under ``key`` was sent less than ``INFLIGHT_BLOCKS`` blocks ago."""
        height = self._tick_height if self._tick_height is not None else self.height()
        sent_at = self._inflight.get(key)
        return sent_at is not None and height - sent_at <= INFLIGHT_BLOCKS

    def send(self, move: Move, *, key: str | None = None) -> bool:
        """Sign and submit ``move``; False (logged) if the chain rejects it."""
        height = self._tick_height if self._tick_height is not None else self.height()
        if key is not None and self.in_flight(key):
            return False
        tx = self.wallet.sign(move.kind, move.body)
        try:
            self.wallet.submit(tx)
        except ProofNetError as exc:
            self.log.info("%s rejected: %s", move.kind, exc)
            self.telemetry.transaction(move.kind, accepted=False)
            return False
        self.telemetry.transaction(move.kind, accepted=True)
        if key is not None:
            self._inflight[key] = height
        self.sent.append((height, move.kind))
        self.log.debug("sent %s", move.kind)
        return True

    # --- isolation -------------------------------------------------------------------------
    def isolated(self, job_id: str, height: int, work: Callable[[], None]) -> None:
        """Run one job's work for this tick; if it raises, back that job off and carry on.

        Any exception counts, not only ProofNetError: the work reads data other parties
        control, and a bug it trips must cost that job a retry, never the agent's other jobs.
        """
        backoff = self.backoffs.get(job_id)
        if backoff is not None and height < backoff.retry_at:
            return
        try:
            work()
        except Exception as exc:
            failures = 1 if backoff is None else backoff.failures + 1
            delay = min(1 << min(failures - 1, 16), BACKOFF_MAX_BLOCKS)
            self.backoffs[job_id] = Backoff(failures, height + delay)
            self.telemetry.error("job_failed")
            if failures == 1:  # the traceback once; then one line per retry
                self.log.exception("job %s failed; retrying in %d blocks", job_id, delay)
            else:
                self.log.warning(
                    "job %s failed again (%d times: %s); retrying in %d blocks",
                    job_id,
                    failures,
                    exc,
                    delay,
                )
            return
        self.backoffs.pop(job_id, None)

    def observe_job(self, job: JobView) -> None:
        """Count a job read from the chain in this agent's metrics (seen, won, closed), and log
        its outcome once when it closes with this agent involved."""
        involved = self.involved_in(job)
        closed = self.telemetry.saw_job(
            job.job_id, job.status, involved=involved, won=job.solver == self.address
        )
        if job.status.is_terminal and self._playing.intersection(job.record.disputes):
            try:
                for dispute in self.disputes(job):  # once: how the games it played ended
                    self._log_outcome(dispute)
            except Exception as exc:  # only a log: it must not cost the tick's other jobs
                self.log.warning("job %s: its disputes' outcome is unknown: %s", job.job_id, exc)
                self._playing.difference_update(job.record.disputes)
        if closed:
            self.log.info("job %s: %s", job.job_id, self.outcome(job))

    def outcome(self, job: JobView) -> str:
        """What a closed job meant for this agent, in a few words (its lifecycle log)."""
        return job.status.value

    def involved_in(self, job: JobView) -> bool:
        """The job is this agent's: it solved it (solver) or judged it (verifier)."""
        return False

    def send_dispute_move(self, move: Move, *, key: str) -> bool:
        """``send`` a move in a dispute game, counted by kind (and logged) when accepted."""
        sent = self.send(move, key=key)
        if sent:
            self.telemetry.dispute_move(move.kind)
            self.log.info("%s sent (%s)", move.kind, _short_ids(key))
        return sent

    def log_once(self, key: str, message: str, *args: Any) -> None:
        """Log ``message`` the first time ``key`` is seen (decisions re-made every tick)."""
        if key not in self._logged_once:
            self._logged_once.add(key)
            self.log.info(message, *args)

    # --- disputes ------------------------------------------------------------------------
    def play_disputes(self, job: JobView, height: int) -> None:
        """This agent's part in the job's open disputes: the one play loop of every agent.

        For each open dispute: the other party's missed deadline is claimed (anyone may);
        then, where this agent is a party and its side has a move in the phase, the honest
        move (``services.agents.player``) goes through its strategy, which sends it, changes
        it or stalls. Opening a seal is no decision of the strategy's: it gave its verdict
        when it sealed. Reveals and seals wait for the challenge window to close.
        """
        if not job.record.open_disputes:
            if self._playing.intersection(job.record.disputes):
                for dispute in self.disputes(job):  # once: how the last of its games ended
                    self._log_outcome(dispute)
            for dispute_id in job.record.disputes:
                self.forget_dispute(dispute_id)
            return  # nothing to play: do not re-read closed disputes every tick
        opponent = Party.CHALLENGER if self.side is Party.SOLVER else Party.SOLVER
        for dispute in self.disputes(job):
            d = dispute.record
            if not d.status.is_open:
                self._log_outcome(dispute)
                continue
            if d.turn is opponent and height > d.deadline:
                claim = Move.of(ClaimTimeoutBody(None, d.dispute_id))
                self.send_dispute_move(claim, key=f"timeout:{d.dispute_id}")
                continue
            if not self.is_party(dispute):
                continue
            self._playing.add(d.dispute_id)
            if d.turn is not self.side and not player.moves_in(self.side, d):
                continue
            window = job.record.challenge_deadline
            if d.phase in AFTER_THE_WINDOW and (window is None or height <= window):
                continue
            honest = self.honest_move(job, dispute)
            if d.phase is Phase.UNSEAL:
                if honest is not None:
                    self.send_dispute_move(honest, key=f"unseal:{d.dispute_id}")
                continue
            move = self.strategy.answer_dispute(dispute, honest)
            if move is not None:
                self.send_dispute_move(move, key=f"dispute:{d.dispute_id}:{len(d.moves)}")

    def _log_outcome(self, dispute: DisputeView) -> None:
        """One INFO line when a game this agent played ends: won or lost, and what decided."""
        d = dispute.record
        if d.dispute_id not in self._playing:
            return
        self._playing.discard(d.dispute_id)
        won = d.winner is self.side
        verdict = "won" if won else ("lost" if d.winner is not Party.NOBODY else "closed")
        what = "dispute %s on job %s: %s (%s, %s)"
        args = (d.dispute_id[:12], d.job_id[:12], verdict, d.status.value, d.resolution.value)
        self.log.info(what, *args)

    def is_party(self, dispute: DisputeView) -> bool:
        """This agent plays ``dispute``: it is the dispute's party of this agent's side."""
        d = dispute.record
        return (d.solver if self.side is Party.SOLVER else d.challenger) == self.address

    def honest_move(self, job: JobView, dispute: DisputeView) -> Move | None:
        """The move the protocol asks of this agent's side (None: none it can make)."""
        return None

    def forget_dispute(self, dispute_id: str) -> None:
        """The dispute is closed: drop what was kept to play it."""

    # --- money --------------------------------------------------------------------------
    def ready(self) -> bool:
        """Funded and staked as this agent needs (see ``stake_needed``/``balance_needed``)."""
        account = self.account()
        return account.bonded >= self.stake_needed() and account.balance >= self.balance_needed()

    def stake_needed(self) -> int:
        return 0

    def balance_needed(self) -> int:
        return 0

    def ensure_funds(
        self, balance_needed: int, stake_needed: int, account: Account | None = None
    ) -> bool:
        """Use the dev faucet and stake until the account holds what the agent needs.

        ``stake_needed`` counts free and locked stake together: stake locked in a job is still
        the agent's, and topping free stake back up would let it take on more work than its
        operator chose to stake for. ``account`` is this tick's read, if the caller has one.
        """
        account = account if account is not None else self.account()
        balance = account.balance
        staked = account.bonded + account.locked
        missing_stake = max(0, stake_needed - staked)
        missing_balance = max(0, balance_needed + missing_stake - balance)
        if missing_balance and self.params.faucet_enabled:
            amount = min(self.params.faucet_max, missing_balance)
            self.send(Move.of(FaucetBody(Amount(amount))), key="faucet")
            return False
        if missing_stake and balance >= missing_stake:
            self.send(Move.of(StakeBody(Amount(missing_stake))), key="stake")
            return False
        return missing_stake == 0 and missing_balance == 0


def _short_ids(key: str) -> str:
    """A move's key (``dispute:<id>:<n>``, ``audit:<job>:<attester>`` ...) for its log line:
    each id cut to 12 hex digits."""
    return _LONG_ID.sub(lambda m: m[0][:12], key)

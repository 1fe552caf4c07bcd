"""What every agent shares: its key, its nonce, sending moves, funding and staking itself.

Agents are tick-driven: ``tick()`` reads the chain, decides, sends transactions and returns. A
transaction is submitted without waiting for its block; the agent tracks its own next nonce and
re-reads it from the chain after any nonce error. A move already sent is not re-sent for a few
blocks (``INFLIGHT_BLOCKS``), so a tick that sees the chain before the move's block does not
duplicate it.

One job's failure never stops an agent's other work: each job's share of a tick runs through
``isolated``, which logs a failure with the job id, backs that job off (exponentially, in
blocks, up to ``BACKOFF_MAX_BLOCKS``) and lets the tick go on with the other jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts_sim.crypto import PrivateKey
from contracts_sim.transactions import sign_transaction
from protocol.errors import ProofNetError
from services.agents.moves import Move
from services.agents.telemetry import AgentTelemetry

INFLIGHT_BLOCKS = 3
NONCE_ERRORS = {"nonce_too_low", "nonce_too_high"}
BACKOFF_MAX_BLOCKS = 32


@dataclass(frozen=True)
class Backoff:
    """A job whose work failed ``failures`` times in a row; it is retried at ``retry_at``."""

    failures: int
    retry_at: int


class Agent:
    role = "agent"

    def __init__(self, client: Any, key: PrivateKey, *, name: str | None = None) -> None:
        self.client = client
        self.key = key
        self.address = key.address
        self.name = name or f"{self.role}-{self.address[2:8]}"
        self.log = logging.getLogger(f"proofnet.{self.name}")
        self._nonce: int | None = None
        self._inflight: dict[str, int] = {}
        self._chain_id: str | None = None
        self._params: dict[str, Any] | None = None
        self.sent: list[tuple[int, str]] = []  # (height, kind) of every accepted submission
        self._tick_height: int | None = None
        self.backoffs: dict[str, Backoff] = {}
        self._logged_once: set[str] = set()
        self.telemetry = AgentTelemetry(self.role, self.address)

    # --- chain facts --------------------------------------------------------------------
    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str(self.client.chain_id())
        return self._chain_id

    @property
    def params(self) -> dict[str, Any]:
        if self._params is None:
            self._params = dict(self.client.params())
        return self._params

    def height(self) -> int:
        return int(self.client.head_height())

    def begin_tick(self) -> tuple[int, dict[str, Any]]:
        """Read the head height and this agent's account once; moves sent this tick use them."""
        self._tick_height = self.height()
        return self._tick_height, self.account()

    def account(self) -> dict[str, Any]:
        return dict(self.client.get_account(self.address))

    # --- sending ------------------------------------------------------------------------
    def _next_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = int(self.client.pending_nonce(self.address))
        return self._nonce

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
        tx = sign_transaction(self.key, self.chain_id, self._next_nonce(), move.kind, move.body)
        try:
            self.client.submit(tx)
        except ProofNetError as exc:
            if getattr(exc, "code", "") in NONCE_ERRORS:
                self._nonce = None
            self.log.info("%s rejected: %s", move.kind, exc)
            self.telemetry.transaction(move.kind, accepted=False)
            return False
        self.telemetry.transaction(move.kind, accepted=True)
        self._nonce = tx.nonce + 1
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

    def observe_job(self, raw: dict[str, Any]) -> None:
        """Count a job read from the chain in this agent's metrics (seen, won, closed)."""
        self.telemetry.saw_job(
            str(raw.get("job_id")),
            str(raw.get("status")),
            involved=self.involved_in(raw),
            won=raw.get("solver") == self.address,
        )

    def involved_in(self, raw: dict[str, Any]) -> bool:
        """The job is this agent's: it solved it (solver) or judged it (verifier)."""
        return False

    def send_dispute_move(self, move: Move, *, key: str) -> bool:
        """``send`` a move in a dispute game, counted by kind when the chain accepts it."""
        sent = self.send(move, key=key)
        if sent:
            self.telemetry.dispute_move(move.kind)
        return sent

    def log_once(self, key: str, message: str, *args: Any) -> None:
        """Log ``message`` the first time ``key`` is seen (decisions re-made every tick)."""
        if key not in self._logged_once:
            self._logged_once.add(key)
            self.log.info(message, *args)

    # --- money --------------------------------------------------------------------------
    def ready(self) -> bool:
        """Funded and staked as this agent needs (see ``stake_needed``/``balance_needed``)."""
        account = self.account()
        return (
            int(account["bonded"]) >= self.stake_needed()
            and int(account["balance"]) >= self.balance_needed()
        )

    def stake_needed(self) -> int:
        return 0

    def balance_needed(self) -> int:
        return 0

    def ensure_funds(
        self, balance_needed: int, stake_needed: int, account: dict[str, Any] | None = None
    ) -> bool:
        """Use the dev faucet and stake until the account holds what the agent needs.

        ``stake_needed`` counts free and locked stake together: stake locked in a job is still
        the agent's, and topping free stake back up would let it take on more work than its
        operator chose to stake for. ``account`` is this tick's read, if the caller has one.
        """
        account = account if account is not None else self.account()
        balance = int(account["balance"])
        staked = int(account["bonded"]) + int(account.get("locked", 0))
        missing_stake = max(0, stake_needed - staked)
        missing_balance = max(0, balance_needed + missing_stake - balance)
        if missing_balance and self.params.get("faucet_enabled"):
            amount = min(int(self.params["faucet_max"]), missing_balance)
            self.send(Move("faucet", {"amount": amount}), key="faucet")
            return False
        if missing_stake and balance >= missing_stake:
            self.send(Move("stake", {"amount": missing_stake}), key="stake")
            return False
        return missing_stake == 0 and missing_balance == 0

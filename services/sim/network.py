"""An in-process ProofNet: an in-memory chain, real agents, and a virtual clock.

The adversarial suite and the statistics tests play hundreds of games with the very agents that
run as processes on a testnet — only the transport differs (``LocalChainClient`` instead of
``HttpChainClient``, ``LocalBlobSource`` instead of HTTP). One *round* lets every agent tick once
and then seals one block, so block height is the clock and a game is fully reproducible.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts_sim.beacon import shared_beacon_key
from contracts_sim.chain import Chain
from contracts_sim.crypto import PrivateKey
from contracts_sim.params import Params
from contracts_sim.transactions import FaucetBody, PostJobBody, TxBody, sign_transaction
from protocol.spec import JobSpec
from protocol.types import Amount
from services.agents.blobs import LocalBlobSource
from services.agents.solver import SolverAgent
from services.agents.strategy import SolverStrategy, VerifierStrategy
from services.agents.verifier import VerifierAgent
from services.agents.views import decode_job
from services.client import LocalChainClient


def key_for(name: str, salt: str = "") -> PrivateKey:
    """A deterministic key for a named simulated actor."""
    return PrivateKey(hashlib.sha256(f"proofnet/sim/{salt}/{name}".encode()).digest())


@dataclass(frozen=True)
class JobTerms:
    payment: int = 1_000
    verification_fee: int = 100
    min_stake: int = 200
    sample_count: int = 2
    bid_blocks: int = 2
    train_blocks: int = 60

    def posting(self, spec: JobSpec) -> PostJobBody:
        """The ``post_job`` of ``spec`` on these terms."""
        return PostJobBody(
            spec=spec,
            payment=Amount(self.payment),
            verification_fee=Amount(self.verification_fee),
            min_stake=Amount(self.min_stake),
            sample_count=self.sample_count,
            bid_blocks=self.bid_blocks,
            train_blocks=self.train_blocks,
        )

    def body(self, spec: JobSpec) -> dict[str, Any]:
        """The JSON of ``posting(spec)``."""
        return self.posting(spec).to_json()


@dataclass
class Network:
    params: Params | str = "test"
    chain_id: str = "proofnet-sim"
    salt: str = ""
    check_invariants: bool = True
    agents: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        ticks = itertools.count(1)
        self.chain = Chain.open(
            None,
            self.chain_id,
            self.params,
            {},
            genesis_time=0,
            beacon_key=shared_beacon_key(),  # RSA key generation is slow; one per process
            check_invariants=self.check_invariants,
            clock=lambda: next(ticks),
        )
        self.client = LocalChainClient(self.chain, automine=False)
        self.blobs = LocalBlobSource()
        self._submitter_nonce: dict[str, int] = {}

    # --- actors -------------------------------------------------------------------------
    def add_solver(
        self, name: str, strategy: SolverStrategy | None = None, **kw: Any
    ) -> SolverAgent:
        kw.setdefault("stake", 4 * JobTerms().min_stake)
        agent = SolverAgent(
            self.client, key_for(name, self.salt), strategy=strategy, name=name, **kw
        )
        self.blobs.register(agent)
        self.agents.append(agent)
        return agent

    def add_verifier(
        self, name: str, strategy: VerifierStrategy | None = None, **kw: Any
    ) -> VerifierAgent:
        agent = VerifierAgent(
            self.client, key_for(name, self.salt), self.blobs, strategy=strategy, name=name, **kw
        )
        self.agents.append(agent)
        return agent

    def send(self, key: PrivateKey, kind: str | TxBody, body: dict[str, Any] | None = None) -> None:
        """Sign a typed body (or a kind and its JSON body) with ``key``'s next pending nonce
        and submit it (no block produced)."""
        nonce = self.client.pending_nonce(key.address)
        if isinstance(kind, TxBody):
            tx = sign_transaction(key, self.chain_id, nonce, kind)
        else:
            tx = sign_transaction(key, self.chain_id, nonce, kind, body or {})
        self.client.submit(tx)

    def post_job(
        self, spec: JobSpec, terms: JobTerms | None = None, submitter: str = "submitter"
    ) -> str:
        """Fund the submitter from the faucet and post a job; returns the job id."""
        terms = terms or JobTerms()
        key = key_for(submitter, self.salt)
        self.send(key, FaucetBody(Amount(terms.payment + terms.verification_fee)))
        nonce = self.client.pending_nonce(key.address)
        tx = sign_transaction(key, self.chain_id, nonce, terms.posting(spec))
        return self.client.post_job(tx, wait=False).job_id

    # --- the clock ----------------------------------------------------------------------
    def warm_up(self, max_rounds: int = 20) -> int:
        """Play rounds until every agent has funded and staked itself."""
        return self.run_until(lambda: all(a.ready() for a in self.agents), max_rounds)

    def round(self) -> None:
        for agent in self.agents:
            agent.tick()
        self.client.produce_block()

    def run_until(self, done: Callable[[], bool], max_rounds: int = 400) -> int:
        """Play rounds until ``done()``; returns the rounds played (raises if it never is)."""
        for rounds in range(1, max_rounds + 1):
            self.round()
            if done():
                return rounds
        raise TimeoutError(f"not done after {max_rounds} rounds")

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.client.get_job(job_id))

    def finished(self, *job_ids: str) -> bool:
        return all(decode_job(self.job(j)).status.is_terminal for j in job_ids)

    def run_jobs(self, *job_ids: str, max_rounds: int = 400) -> int:
        return self.run_until(lambda: self.finished(*job_ids), max_rounds)

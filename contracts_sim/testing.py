"""An in-memory chain for tests and simulations: named keys, correct nonces, blocks on demand.

    h = LedgerHarness(balances={"alice": 1_000, "bob": 500})
    h.send("alice", TransferBody(h.address("bob"), Amount(10)))   # at h.height
    h.advance(3)                                  # three more blocks (deadlines move)
    h.expect_error("bob", StakeBody(Amount(10**9)), error=InsufficientBalanceError)
    h.expect_error("bob", "stake", {"amount": -1}, MalformedBodyError)  # a hand-made body

Transactions are typed bodies (``contracts_sim.transactions``); a kind and a JSON body are
taken too, for the bodies a test means to malform.

Every accepted transaction is followed by ``check_invariant``; ``expect_error`` also checks that
the rejected transaction changed nothing at all (same ``to_json()``, same state root). Block
hashes are ``SHA-256(parent hash, height, state root)``; beacons are real producer signatures
(``contracts_sim.beacon``, with the process's shared test key), so sample seeds are the ones a
chain would give. This is not the block producer (no blocks, no mempool): it is just enough
chain to drive the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts_sim.beacon import BeaconKey, beacon_output, shared_beacon_key
from contracts_sim.crypto import PrivateKey, key_from_seed
from contracts_sim.env import BlockEnv
from contracts_sim.events import Event
from contracts_sim.exceptions import LedgerError
from contracts_sim.fork import apply_transaction, begin_block, genesis_state
from contracts_sim.invariants import check_invariant
from contracts_sim.params import TEST, Params
from contracts_sim.records import Account
from contracts_sim.state import LedgerState
from contracts_sim.transactions import Transaction, TxBody, sign_transaction
from protocol.errors import ProofNetError
from protocol.hashing import hash_json
from protocol.types import Address, Hash32, Height

DEFAULT_CHAIN_ID = "proofnet-test"


@dataclass
class Receipt:
    height: Height
    tx: Transaction
    events: list[Event] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def event(self, kind: str) -> Event:
        matches = [e for e in self.events if e.kind == kind]
        if len(matches) != 1:
            raise AssertionError(f"expected one {kind!r} event, got {self.kinds()}")
        return matches[0]


class LedgerHarness:
    """Keys by name, a ledger state, and a height that tests move forward."""

    def __init__(
        self,
        balances: Mapping[str, int] | None = None,
        params: Params = TEST,
        chain_id: str = DEFAULT_CHAIN_ID,
        *,
        check_invariants: bool = True,
        beacon_key: BeaconKey | None = None,
    ) -> None:
        self.params = params
        self.chain_id = chain_id
        self.beacon_key = beacon_key or shared_beacon_key()
        self.check_invariants = check_invariants
        self.keys: dict[str, PrivateKey] = {}
        balances = dict(balances or {})
        for name in balances:
            self.add_key(name)
        self.state: LedgerState = genesis_state(
            {self.address(name): amount for name, amount in balances.items()}, params
        )
        self.height = Height(0)
        self.receipts: list[Receipt] = []
        self.advance()  # block 1: the first block that can hold transactions

    # --- keys ---------------------------------------------------------------------------

    def add_key(self, name: str) -> PrivateKey:
        key = key_from_seed(f"harness/{self.chain_id}/{name}")
        self.keys[name] = key
        return key

    def key(self, name: str) -> PrivateKey:
        return self.keys[name]

    def address(self, name: str) -> Address:
        return self.keys[name].address

    def account(self, name: str) -> Account:
        return self.state.get_account(self.address(name))

    # --- blocks -------------------------------------------------------------------------

    @property
    def env(self) -> BlockEnv:
        return BlockEnv(
            height=self.height, time=1_700_000_000 + 6 * self.height, chain_id=self.chain_id
        )

    def block_hash(self, height: Height, state: LedgerState | None = None) -> Hash32:
        """The hash the harness gives block ``height`` once it is finished (with ``state``, a
        copy the caller changed, instead of the harness's own: what the hash would be)."""
        state = self.state if state is None else state
        parent = state.get_block_hash(Height(height - 1)) if height > 0 else None
        return hash_json(
            {
                "chain_id": self.chain_id,
                "height": height,
                "parent": parent.hex() if parent else None,
                "state_root": state.state_root().hex(),
            }
        )

    def beacon(self, height: Height) -> bytes:
        """The beacon of block ``height``: the producer's signature, whatever the block holds."""
        return self.beacon_key.sign(self.chain_id, height)

    def advance(self, blocks: int = 1) -> Height:
        """Finish the current block and begin ``blocks`` new ones; return the new height."""
        for _ in range(blocks):
            parent_hash = self.block_hash(self.height)
            parent_beacon = beacon_output(self.beacon(self.height))
            self.height = Height(self.height + 1)
            begin_block(self.state, self.env, parent_hash, parent_beacon)
        return self.height

    def advance_to(self, height: int) -> Height:
        if height < self.height:
            raise ValueError(f"cannot go back from {self.height} to {height}")
        return self.advance(height - self.height)

    # --- transactions -------------------------------------------------------------------

    def sign(
        self,
        name: str,
        kind: str | TxBody,
        body: Mapping[str, Any] | None = None,
        *,
        nonce: int | None = None,
    ) -> Transaction:
        """Sign a typed body, or a kind and its JSON body, with ``name``'s next nonce."""
        if nonce is None:
            nonce = self.account(name).nonce
        if isinstance(kind, TxBody):
            if body is not None:
                raise TypeError("a typed body carries its kind: pass no JSON body with it")
            return sign_transaction(self.key(name), self.chain_id, nonce, kind)
        return sign_transaction(self.key(name), self.chain_id, nonce, kind, body or {})

    def apply(self, tx: Transaction) -> Receipt:
        events = apply_transaction(self.state, tx, self.env, self.params)
        if self.check_invariants:
            check_invariant(self.state)
        receipt = Receipt(self.height, tx, events)
        self.receipts.append(receipt)
        return receipt

    def send(self, name: str, kind: str | TxBody, body: Mapping[str, Any] | None = None) -> Receipt:
        """Sign with the next nonce and apply at the current height."""
        return self.apply(self.sign(name, kind, body))

    def expect_error(
        self,
        name: str,
        kind: str | TxBody,
        body: Mapping[str, Any] | None = None,
        error: type[ProofNetError] = LedgerError,
        *,
        tx: Transaction | None = None,
    ) -> ProofNetError:
        """Apply a transaction that must fail with ``error`` and change nothing (a typed body:
        ``expect_error(name, body, error=...)``)."""
        tx = tx if tx is not None else self.sign(name, kind, body)
        return self.expect_rejected(tx, error)

    def expect_rejected(
        self, tx: Transaction, error: type[ProofNetError] = LedgerError
    ) -> ProofNetError:
        before_json, before_root = self.state.to_json(), self.state.state_root()
        dirty_before = self.state.dirty_keys()
        try:
            self.apply(tx)
        except error as exc:
            if self.state.to_json() != before_json or self.state.state_root() != before_root:
                raise AssertionError(f"{type(exc).__name__} left the state changed") from exc
            if self.state.dirty_keys() != dirty_before:
                raise AssertionError(f"{type(exc).__name__} left keys marked dirty") from exc
            return exc
        raise AssertionError(f"{tx.kind} by {tx.sender} was accepted; expected {error.__name__}")

"""ProofNet's ledger: a simulated chain written like a spec (docs/ledger.md).

The tree is the table of contents. The rules (no I/O; a transaction applies all or nothing):

    fork.py             the state-transition function: apply_transaction, begin_block,
                        genesis_state, check_transaction; PROCESSORS (kind -> process_*)
    transactions.py     the signed envelope and one typed body per kind (TX_KINDS)
    env.py              BlockEnv, TxContext: the block a transaction is in and its sender
    state.py            LedgerState: tables of frozen records, copy-on-write, an undo journal
    records.py          Account, Job, Bid, Dispute, ... (the tables' rows) and their enums
    tokens.py           faucet, transfer
    staking.py          stake, unstake, withdraw; the stake a bid reserves; every change of
                        stake by name (bond, unbond, lock, release, slash)
    registry.py         set_endpoint: where an account serves its data
    jobs.py             post_job, bid, close_bidding, cancel_job, commit_progress,
                        commit_final, attest, settle; the training-deadline timeout; slashing
    scoring.py          score_bid: how bids are ranked
    moves.py            the dispute game's move table: MOVES (phases, parties, next phases), TURN
    dispute.py          challenge, data requests and the refereed bisection game
    operator_dispute.py the game inside one step: to one operator, then one element
    forced_errors.py    sealed challenges, unseal, reveal_trap, audits of attesters
    referee.py          the only place the ledger runs the exact VM: one step, one element
    timeouts.py         claim_timeout
    invariants.py       check_invariant: tokens are neither created nor lost outside the rules
    params.py           Params and its named presets (PRESETS)
    events.py           Event
    exceptions.py       the LedgerError tree
    crypto.py           Ed25519 keys, addresses and the pinned verification rule
    beacon.py           the block producer's unique RSA signature per height: the randomness
    codec.py            JSON encoding of records

Around the rules (the block producer and its persistence):

    chain.py            Chain: the open block (mempool), block production, receipts, events
    blocks.py           block headers, receipts, chain events
    state_tree.py       the sparse Merkle tree over the state: state roots and row proofs
    store.py            SqlStore: SQLAlchemy 2, SQLite by default, PostgreSQL by URL
    migrations/         Alembic migrations of the store's schema (``python -m
                        contracts_sim.migrations``)
    testing.py          LedgerHarness: an in-memory chain for tests

The protocol these rules implement, and why each is shaped as it is: docs/protocol.md.
Layering: imports ``protocol`` only, never ``services``; torch only through ``protocol.exact``.
See docs/ledger.md for the transaction kinds, bodies, errors and tables.
"""

from contracts_sim.env import BlockEnv, TxContext
from contracts_sim.events import Event
from contracts_sim.exceptions import InvariantViolation, LedgerError
from contracts_sim.fork import (
    PROCESSORS,
    apply_transaction,
    begin_block,
    check_transaction,
    genesis_state,
)
from contracts_sim.invariants import check_invariant
from contracts_sim.params import PRESETS, Params, get_preset
from contracts_sim.state import LedgerState
from contracts_sim.transactions import TX_KINDS, Transaction, parse_body, sign_transaction

__all__ = [
    "PRESETS",
    "PROCESSORS",
    "TX_KINDS",
    "BlockEnv",
    "Event",
    "InvariantViolation",
    "LedgerError",
    "LedgerState",
    "Params",
    "Transaction",
    "TxContext",
    "apply_transaction",
    "begin_block",
    "check_invariant",
    "check_transaction",
    "genesis_state",
    "get_preset",
    "parse_body",
    "sign_transaction",
]

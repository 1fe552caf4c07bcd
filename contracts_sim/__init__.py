"""ProofNet's ledger: a simulated chain written like a spec (docs/ledger.md).

The tree is the table of contents:

    fork.py          the state-transition function: apply_transaction, begin_block, genesis_state
    transactions.py  the signed envelope and one typed body per kind (TX_KINDS)
    state.py         LedgerState: tables of frozen records with an undo journal
    records.py       Account, Job, Bid, Dispute, ... (the tables' rows)
    tokens.py        faucet, transfer
    staking.py       stake, unstake, withdraw
    jobs.py          post_job, bid, close_bidding, cancel_job, commit_progress, commit_final,
                     attest, settle, and the training-deadline timeout
    scoring.py       score_bid: how bids are ranked
    dispute.py       challenge and the refereed bisection game
    referee.py       the one-step re-execution (the only place that runs the exact VM)
    timeouts.py      claim_timeout
    invariants.py    check_invariant: tokens are neither created nor lost outside the rules
    params.py        Params and its presets ("test", "testnet")
    events.py        Event
    exceptions.py    the LedgerError tree
    crypto.py        Ed25519 keys and addresses
    codec.py         JSON encoding of records
    testing.py       LedgerHarness: an in-memory chain for tests

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

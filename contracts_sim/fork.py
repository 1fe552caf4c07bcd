"""The state-transition function: everything a transaction can do, and nothing else.

    genesis_state(allocations, params) -> LedgerState          height 0
    begin_block(state, env, parent_hash, parent_beacon)        once per block, before its txs
    apply_transaction(state, tx, env, params) -> list[Event]   all or nothing
    check_transaction(state, tx, env)                          the envelope checks alone

``apply_transaction`` checks the envelope (chain id, sender = address of the public key,
signature over ``tx.signing_bytes()``, nonce == the account's next nonce), parses the body for
``tx.kind``, increments the sender's nonce and runs ``PROCESSORS[tx.kind]``. If anything raises —
a ``LedgerError``, a ``ProofNetError`` from the protocol layer, or a bug — every write is rolled
back and the error propagates: a rejected transaction changes nothing, not even the nonce.

``begin_block`` records the parent's hash as the hash of block ``height - 1`` (as EIP-2935 does)
and the parent's beacon output (as EIP-4788 records the parent beacon root); the beacon output of
the block after a job's final commitment seeds its verifiers' samples (``contracts_sim.beacon``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from contracts_sim.crypto import address_of, check_public_key, is_address, verify_signature
from contracts_sim.dispute import (
    process_challenge,
    process_choose_child,
    process_post_midpoint,
    process_post_prestate,
    process_publish_data,
    process_respond_midpoint,
    process_reveal_children,
    process_reveal_leaf,
)
from contracts_sim.env import BlockEnv, TxContext
from contracts_sim.events import Event
from contracts_sim.exceptions import (
    InvalidBlockError,
    InvalidPublicKeyError,
    InvalidSignatureError,
    NonceTooHighError,
    NonceTooLowError,
    SenderMismatchError,
    UnknownTransactionKindError,
    WrongChainError,
)
from contracts_sim.forced_errors import process_audit, process_reveal_trap, process_unseal
from contracts_sim.invariants import check_invariant
from contracts_sim.jobs import (
    process_attest,
    process_bid,
    process_cancel_job,
    process_close_bidding,
    process_commit_final,
    process_commit_progress,
    process_post_job,
    process_settle,
)
from contracts_sim.operator_dispute import (
    process_commit_trace,
    process_name_element,
    process_post_pieces,
    process_reveal_chunk,
    process_reveal_op,
    process_show_overflow,
)
from contracts_sim.params import Params
from contracts_sim.records import Account, Supply
from contracts_sim.registry import process_set_endpoint
from contracts_sim.staking import process_stake, process_unstake, process_withdraw
from contracts_sim.state import LedgerState, account_with
from contracts_sim.timeouts import process_claim_timeout
from contracts_sim.tokens import process_faucet, process_transfer
from contracts_sim.transactions import TX_KINDS, Transaction, parse_body
from protocol.types import HASH_SIZE, Address, Amount, Hash32, Height

GENESIS_HEIGHT: Final = Height(0)

Processor = Callable[[LedgerState, TxContext, Any, Params], list[Event]]

PROCESSORS: Final[dict[str, Processor]] = {
    "faucet": process_faucet,
    "transfer": process_transfer,
    "stake": process_stake,
    "unstake": process_unstake,
    "withdraw": process_withdraw,
    "set_endpoint": process_set_endpoint,
    "post_job": process_post_job,
    "bid": process_bid,
    "close_bidding": process_close_bidding,
    "cancel_job": process_cancel_job,
    "commit_progress": process_commit_progress,
    "commit_final": process_commit_final,
    "attest": process_attest,
    "challenge": process_challenge,
    "reveal_children": process_reveal_children,
    "choose_child": process_choose_child,
    "reveal_leaf": process_reveal_leaf,
    "post_midpoint": process_post_midpoint,
    "respond_midpoint": process_respond_midpoint,
    "post_prestate": process_post_prestate,
    "publish_data": process_publish_data,
    "unseal": process_unseal,
    "reveal_trap": process_reveal_trap,
    "audit": process_audit,
    "claim_timeout": process_claim_timeout,
    "settle": process_settle,
    "commit_trace": process_commit_trace,
    "reveal_op": process_reveal_op,
    "show_overflow": process_show_overflow,
    "reveal_chunk": process_reveal_chunk,
    "name_element": process_name_element,
    "post_pieces": process_post_pieces,
}
assert set(PROCESSORS) == set(TX_KINDS), "every body kind has exactly one processor"


def genesis_state(allocations: Mapping[Address, int], params: Params) -> LedgerState:
    """The state at height 0: ``allocations`` in balances, counted as genesis supply."""
    state = LedgerState()
    total = 0
    for address, amount in sorted(allocations.items()):
        if not is_address(address):
            raise ValueError(f"genesis allocation to a malformed address {address!r}")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError(f"genesis allocation {amount!r} to {address} is not a token amount")
        state.set_account(address, Account(balance=Amount(amount)))
        total += amount
    state.set_supply(Supply(genesis=Amount(total)))
    check_invariant(state)
    return state


def begin_block(
    state: LedgerState, env: BlockEnv, parent_hash: Hash32, parent_beacon: Hash32
) -> None:
    """Start block ``env.height``: record ``parent_hash`` and ``parent_beacon`` (the beacon
    output, already verified against the producer key) as those of block height - 1."""
    # Blocks follow genesis ...
    if env.height < GENESIS_HEIGHT + 1:
        raise InvalidBlockError(f"block height must be at least 1, got {env.height}")
    # ... once each ...
    parent_height = Height(env.height - 1)
    if state.get_block_hash(parent_height) is not None:
        raise InvalidBlockError(f"block {env.height} has already begun")
    # ... in order (the parent's own parent was recorded when the parent began).
    if parent_height > GENESIS_HEIGHT and state.get_block_hash(Height(parent_height - 1)) is None:
        raise InvalidBlockError(f"block {parent_height} has not begun; cannot begin {env.height}")
    # ... and name their parent by a 32-byte hash.
    if not isinstance(parent_hash, bytes) or len(parent_hash) != HASH_SIZE:
        raise InvalidBlockError("parent hash must be 32 bytes")
    # ... and carry its beacon output, a 32-byte hash.
    if not isinstance(parent_beacon, bytes) or len(parent_beacon) != HASH_SIZE:
        raise InvalidBlockError("parent beacon output must be 32 bytes")
    state.set_block_hash(parent_height, parent_hash)
    state.set_beacon_output(parent_height, parent_beacon)


def check_signer(tx: Transaction, env: BlockEnv) -> None:
    """The envelope checks that come before the signature's: chain, sender, key (cheap, no
    state). Changes nothing."""
    # Signed for this chain.
    if tx.chain_id != env.chain_id:
        raise WrongChainError(env.chain_id, tx.chain_id)
    # Sent from the account of the key that signed it.
    derived = address_of(tx.public_key)
    if tx.sender != derived:
        raise SenderMismatchError(tx.sender, derived)
    # By a key that may sign: canonical and not of small order (docs/protocol.md "Signatures").
    if reason := check_public_key(tx.public_key):
        raise InvalidPublicKeyError(tx.sender, reason)


def check_transaction(state: LedgerState, tx: Transaction, env: BlockEnv) -> None:
    """The envelope checks: chain, key, signature, nonce. Changes nothing."""
    check_signer(tx, env)
    # Signed by that key.
    if not verify_signature(tx.public_key, tx.signing_bytes(), tx.signature):
        raise InvalidSignatureError(tx.sender)
    # The account's next nonce: not a replay, not a gap.
    expected = state.get_account(tx.sender).nonce
    if tx.nonce < expected:
        raise NonceTooLowError(expected, tx.nonce)
    if tx.nonce > expected:
        raise NonceTooHighError(expected, tx.nonce)
    # A kind this ledger knows.
    if tx.kind not in PROCESSORS:
        raise UnknownTransactionKindError(tx.kind)


def apply_transaction(
    state: LedgerState, tx: Transaction, env: BlockEnv, params: Params
) -> list[Event]:
    """Apply ``tx`` completely and return its events, or raise and change nothing."""
    state.begin()
    try:
        events = _process_transaction(state, tx, env, params)
    except BaseException:
        state.rollback()
        raise
    state.commit()
    return events


def _process_transaction(
    state: LedgerState, tx: Transaction, env: BlockEnv, params: Params
) -> list[Event]:
    check_transaction(state, tx, env)
    body = parse_body(tx.kind, tx.body)
    ctx = TxContext(env=env, sender=tx.sender, nonce=tx.nonce, tx_hash=tx.tx_hash)
    increment_nonce(state, tx.sender)
    return PROCESSORS[tx.kind](state, ctx, body, params)


def increment_nonce(state: LedgerState, address: Address) -> None:
    account = state.get_account(address)
    state.set_account(address, account_with(account, nonce=account.nonce + 1))

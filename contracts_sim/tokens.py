"""Tokens: the dev faucet and transfers."""

from __future__ import annotations

from contracts_sim.env import TxContext
from contracts_sim.events import Event, make_event
from contracts_sim.exceptions import FaucetCapExceededError, FaucetDisabledError
from contracts_sim.params import Params
from contracts_sim.state import LedgerState, decrease_balance, increase_balance, mint
from contracts_sim.transactions import FaucetBody, TransferBody


def process_faucet(
    state: LedgerState, ctx: TxContext, body: FaucetBody, params: Params
) -> list[Event]:
    """Mint ``amount`` to the sender (dev chains only; tops up to ``params.faucet_max``)."""
    account = state.get_account(ctx.sender)
    # The chain has a faucet at all.
    if not params.faucet_enabled:
        raise FaucetDisabledError()
    # The faucet only tops balances up to its cap: it cannot be farmed into a fortune.
    if account.balance + body.amount > params.faucet_max:
        raise FaucetCapExceededError(ctx.sender, params.faucet_max, account.balance + body.amount)

    mint(state, ctx.sender, body.amount)
    return [make_event("minted", address=ctx.sender, amount=body.amount)]


def process_transfer(
    state: LedgerState, ctx: TxContext, body: TransferBody, params: Params
) -> list[Event]:
    """Move ``amount`` from the sender's balance to ``to``."""
    decrease_balance(state, ctx.sender, body.amount)  # raises InsufficientBalanceError
    increase_balance(state, body.to, body.amount)
    return [make_event("transfer", sender=ctx.sender, to=body.to, amount=body.amount)]

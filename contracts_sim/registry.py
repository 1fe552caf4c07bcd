"""The endpoint registry: where an account serves data.

A solver announces the URL at which verifiers fetch its leaf lists and checkpoint blobs, and
submitters its trained models. The ledger only records it; data availability itself is enforced
by the dispute game (a solver that does not serve the pre-state loses on a deadline).
"""

from __future__ import annotations

from dataclasses import replace

from contracts_sim.env import TxContext
from contracts_sim.events import Event, make_event
from contracts_sim.params import Params
from contracts_sim.state import LedgerState
from contracts_sim.transactions import SetEndpointBody


def process_set_endpoint(
    state: LedgerState, ctx: TxContext, body: SetEndpointBody, params: Params
) -> list[Event]:
    """Record ``url`` as the sender's data endpoint ("" withdraws it)."""
    account = state.get_account(ctx.sender)
    state.set_account(ctx.sender, replace(account, endpoint=body.url))
    return [make_event("endpoint_set", address=ctx.sender, url=body.url)]

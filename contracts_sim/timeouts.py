"""``claim_timeout``: anyone may enforce a deadline that a party let pass.

* ``{job_id}`` — the solver missed its training deadline (jobs.py): slashed, submitter refunded.
* ``{dispute_id}`` — a party missed its move deadline (dispute.py): it loses the game.
"""

from __future__ import annotations

from contracts_sim.dispute import claim_move_timeout
from contracts_sim.env import TxContext
from contracts_sim.events import Event
from contracts_sim.jobs import claim_training_timeout
from contracts_sim.params import Params
from contracts_sim.state import LedgerState
from contracts_sim.transactions import ClaimTimeoutBody


def process_claim_timeout(
    state: LedgerState, ctx: TxContext, body: ClaimTimeoutBody, params: Params
) -> list[Event]:
    if body.job_id is not None:
        return claim_training_timeout(state, ctx, body.job_id, params)
    assert body.dispute_id is not None
    return claim_move_timeout(state, ctx, body.dispute_id, params)

"""block-stuffing: fill every block with free self-transfers so that an honest party's dispute
move is refused (``block_full``) until its deadline passes, and it loses the game.

Transactions cost nothing here, so block space cannot be priced; instead moves with a deadline
(dispute moves, data publications, timeout claims) get room past a full block, up to twice the
cap. They cannot flood that room: each is valid only from the party to move in an open dispute,
or once per missed deadline — the rules, not the block size, refuse the rest.
"""

from __future__ import annotations

import pytest

from contracts_sim.exceptions import BlockFullError, DisputeNotFoundError
from contracts_sim.transactions import sign_transaction
from tests.contracts_sim.test_chain import ALICE, BOB, CHAIN_ID, open_chain, transfer

pytestmark = pytest.mark.adversarial


def test_a_full_block_still_takes_a_move_with_a_deadline() -> None:
    chain = open_chain(max_block_txs=3)
    for nonce in range(3):
        chain.submit(transfer(ALICE, nonce, 1))  # the stuffing
    with pytest.raises(BlockFullError):
        chain.submit(transfer(ALICE, 3, 1))
    # A timeout claim is judged by the rules, not refused for space (here: no such dispute).
    claim = sign_transaction(BOB, CHAIN_ID, 0, "claim_timeout", {"dispute_id": "ab" * 32})
    with pytest.raises(DisputeNotFoundError):
        chain.submit(claim)

"""What a transaction sees besides the state: the block it is in, and who sent it."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.types import Address, Hash32, Height


@dataclass(frozen=True)
class BlockEnv:
    """The block a transaction is applied in. ``height`` is the clock for every deadline."""

    height: Height
    time: int  # unix seconds, informational (deadlines use heights)
    chain_id: str


@dataclass(frozen=True)
class TxContext:
    """Passed to every ``process_*``: the block, the (verified) sender and its nonce."""

    env: BlockEnv
    sender: Address
    nonce: int  # the nonce this transaction used (before the increment)
    tx_hash: Hash32

    @property
    def height(self) -> Height:
        return self.env.height

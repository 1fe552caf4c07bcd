"""Node settings, validated at start-up (pydantic-settings; environment prefix ``PROOFNET_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts_sim.chain import DEFAULT_CHAIN_ID, DEFAULT_MAX_BLOCK_TXS
from contracts_sim.crypto import is_address


class NodeSettings(BaseSettings):
    """How a chain node runs. Every field can be set as ``PROOFNET_<FIELD>`` in the environment
    (``genesis`` as JSON: ``PROOFNET_GENESIS='{"0xabc…": 1000000}'``)."""

    model_config = SettingsConfigDict(env_prefix="PROOFNET_", extra="ignore")

    db_url: str = Field(
        default="sqlite:///.proofnet/chain.db",
        description="sqlite:///path.db, postgresql+psycopg://user@host/db, or memory://",
    )
    chain_id: str = Field(default=DEFAULT_CHAIN_ID, min_length=1, max_length=64)
    preset: Literal["test", "testnet", "testnet-operator", "demo"] = "testnet"
    block_time: float = Field(
        default=2.0,
        ge=0,
        description="seconds between blocks; 0 = blocks only on demand (dev only)",
    )
    dev: bool = Field(
        default=False,
        description="the faucet, POST /dev/blocks, invariant checks, automine on wait",
    )
    genesis: dict[str, int] = Field(default_factory=dict, description="address -> balance")
    check_invariants: bool | None = Field(default=None, description="default: on in dev mode")
    wait_timeout: float = Field(
        default=30.0, gt=0, le=600, description="longest ?wait=true, seconds"
    )
    max_block_txs: int = Field(default=DEFAULT_MAX_BLOCK_TXS, ge=1)
    max_batch_txs: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="most transactions in one POST /txs/batch",
    )
    start_checkers: bool = Field(
        default=True,
        description="start the envelope-checking worker processes at start-up (off: at the "
        "first batch; a node that takes no batches, like the demo's, never starts them)",
    )
    max_body_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="largest request body (default: the largest transaction the chain allows)",
    )

    @model_validator(mode="after")
    def _check(self) -> NodeSettings:
        if self.block_time == 0 and not self.dev:
            raise ValueError("block_time 0 (blocks on demand only) needs dev mode")
        for address, amount in self.genesis.items():
            if not is_address(address) or amount < 0:
                raise ValueError(f"genesis: {address!r} -> {amount!r} is not an allocation")
        return self

    @property
    def invariants_checked(self) -> bool:
        return self.dev if self.check_invariants is None else self.check_invariants

    @property
    def automine(self) -> bool:
        """Dev chains without a block timer produce a block when a client waits for one."""
        return self.dev and self.block_time == 0

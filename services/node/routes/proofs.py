"""State proofs: a row of the head state with its sparse Merkle proof (docs/state-commitment.md).

A light client that trusts a block header checks the answer against the header's
``state_root`` (``HttpChainClient.proven_record``) instead of trusting the node. A key with no
row gets a proof of absence (for an account: the empty account), not a 404. Only the head
state is kept, so proofs are against the head block.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from pydantic import BaseModel, Field

from contracts_sim.chain import Chain
from contracts_sim.state import ACCOUNTS, DISPUTES, JOBS, LedgerState
from services.errors import HeadStateUnavailableError
from services.node.deps import ChainDep
from services.node.errors import INVALID_ID, error_responses
from services.node.views import parse_address, parse_id

router = APIRouter(prefix="/proofs", tags=["chain"])

HEAD_READ_ATTEMPTS: Final = 8
"""A block sealed between reading the head header and the head state gives a pair that does
not match; read again (a seal is rare next to a read)."""


class ProofLeaf(BaseModel):
    key_path: str = Field(description="SHA-256 of the row's table and key: its place in the tree")
    value_hash: str = Field(description="SHA-256 of the canonical JSON of the record")


class StateProofPublic(BaseModel):
    leaf: ProofLeaf | None = Field(
        description="the leaf where the key's path ends: the key's own (present), another "
        "key's sharing the path so far, or null for an empty subtree (absent)"
    )
    siblings: list[str] = Field(description="sibling hashes from the root down, hex")


class ProvenRecordPublic(BaseModel):
    table: str
    key: str
    record: dict[str, Any] | None = Field(description="the row's record; null when absent")
    height: int = Field(description="the block whose state_root this proof is against")
    state_root: str
    proof: StateProofPublic


def _head(chain: Chain) -> tuple[int, LedgerState, bytes]:
    """The head block's height and state, read as a matching pair."""
    for _ in range(HEAD_READ_ATTEMPTS):
        header, state = chain.head, chain.state
        root = state.state_root()
        if root == header.state_root:
            return header.height, state, root
    raise HeadStateUnavailableError()


def proven_row(chain: Chain, table: str, key: str) -> dict[str, Any]:
    """The row ``(table, key)`` of the head state, its proof, and the block it is against."""
    height, state, root = _head(chain)
    return {
        "table": table,
        "key": key,
        "record": state.record_to_json(table, key),
        "height": height,
        "state_root": root.hex(),
        "proof": state.prove(table, key).to_json(),
    }


DESCRIPTION_TAIL = (
    " Verify it against the `state_root` of block `height` (docs/state-commitment.md); "
    "only the head block's state is served."
)


@router.get(
    "/accounts/{address}",
    response_model=ProvenRecordPublic,
    summary="An account with its state proof",
    responses=error_responses(INVALID_ID),
    description="The account's row (null: the empty account, with a proof of absence)."
    + DESCRIPTION_TAIL,
)
def prove_account(address: str, chain: ChainDep) -> dict[str, Any]:
    return proven_row(chain, ACCOUNTS, parse_address(address))


@router.get(
    "/jobs/{job_id}",
    response_model=ProvenRecordPublic,
    summary="A job with its state proof",
    responses=error_responses(INVALID_ID),
    description="The job's record (null: no such job, with a proof of absence)." + DESCRIPTION_TAIL,
)
def prove_job(job_id: str, chain: ChainDep) -> dict[str, Any]:
    return proven_row(chain, JOBS, parse_id(job_id, "job id"))


@router.get(
    "/disputes/{dispute_id}",
    response_model=ProvenRecordPublic,
    summary="A dispute with its state proof",
    responses=error_responses(INVALID_ID),
    description="The dispute's record (null: no such dispute, with a proof of absence)."
    + DESCRIPTION_TAIL,
)
def prove_dispute(dispute_id: str, chain: ChainDep) -> dict[str, Any]:
    return proven_row(chain, DISPUTES, parse_id(dispute_id, "dispute id"))

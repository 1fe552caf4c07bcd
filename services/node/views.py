"""The JSON views of chain data that the node serves and ``LocalChainClient`` returns.

One function per resource, shared by both, so an agent sees the same dicts whether it talks to
a node over HTTP or to a ``Chain`` in-process. Records are written with
``contracts_sim.codec.to_json_value`` (bytes → hex, enums → strings, tuples → lists) and a few
derived fields are added (``next_nonce``, ``total_stake``, ``turn_address``, ``history`` …).
"""

from __future__ import annotations

import re
from typing import Any, Final

from contracts_sim.blocks import Block
from contracts_sim.chain import Chain
from contracts_sim.codec import to_json_value
from contracts_sim.crypto import is_address
from contracts_sim.exceptions import InvariantViolation
from contracts_sim.invariants import check_invariant, compute_supply_report
from contracts_sim.records import Dispute, Job, Party
from protocol.types import Address
from services.errors import InvalidIdentifierError

JsonObject = dict[str, Any]

_ID = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
MAX_HISTORY: Final = 1000
MAX_JOB_IDS: Final = 100
"""The most job ids one ``GET /jobs?job_id=…`` names (a client splits a longer list)."""


def parse_id(value: str, what: str = "id") -> str:
    """A job id, dispute id or transaction hash: 64 hex digits (``0x`` optional), lowercased."""
    if not _ID.fullmatch(value):
        raise InvalidIdentifierError(what, value)
    return value.removeprefix("0x").lower()


def parse_address(value: str) -> Address:
    if not is_address(value):
        raise InvalidIdentifierError("address", value)
    return Address(value)


def account_view(chain: Chain, address: Address) -> JsonObject:
    account = chain.get_account(address)
    return {
        "address": address,
        **to_json_value(account),
        "total_stake": account.total_stake,
        "next_nonce": chain.next_nonce(address),
    }


def job_view(job: Job) -> JsonObject:
    view: JsonObject = to_json_value(job)
    return view


def dispute_summary(dispute: Dispute) -> JsonObject:
    return {
        "dispute_id": dispute.dispute_id,
        "challenger": dispute.challenger,
        "status": dispute.status.value,
        "phase": dispute.phase.value,
        "turn": dispute.turn.value,
        "deadline": dispute.deadline,
        "winner": dispute.winner.value,
        "resolution": dispute.resolution.value,
    }


def job_detail_view(chain: Chain, job_id: str) -> JsonObject:
    """The whole lifecycle: the job record, its disputes in brief, and its event history."""
    job = chain.get_job(job_id)
    disputes = [chain.get_dispute(d) for d in job.disputes]
    return {
        **job_view(job),
        "dispute_summaries": [dispute_summary(d) for d in disputes],
        "history": [e.to_json() for e in chain.history(job_id=job_id, limit=MAX_HISTORY)],
    }


def dispute_view(chain: Chain, dispute: Dispute) -> JsonObject:
    turn_address = {Party.SOLVER: dispute.solver, Party.CHALLENGER: dispute.challenger}.get(
        dispute.turn
    )
    is_open = dispute.closed_height is None
    return {
        **to_json_value(dispute),
        "turn_address": turn_address if is_open else None,
        "blocks_left": max(dispute.deadline - chain.height, 0) if is_open else None,
        "rounds": len(dispute.moves),
    }


def block_view(block: Block) -> JsonObject:
    return {
        "hash": block.hash.hex(),
        "header": block.header.to_json(),
        "tx_hashes": [h.hex() for h in block.tx_hashes()],
        "transactions": [tx.to_json() for tx in block.transactions],
    }


def params_view(chain: Chain) -> JsonObject:
    return {
        "chain_id": chain.chain_id,
        "preset": chain.preset,
        "params": chain.params.to_json(),
        "beacon_public_key": chain.beacon_public_key.hex(),
    }


def health_view(chain: Chain) -> JsonObject:
    head = chain.head
    return {
        "status": "ok",
        "chain_id": chain.chain_id,
        "height": head.height,
        "head_hash": head.hash.hex(),
        "pending_txs": len(chain.pending_hashes()),
        "last_event_id": chain.last_event_id,
    }


def supply_view(chain: Chain) -> JsonObject:
    """The supply invariant at the head: where every token is, and whether the books balance."""
    state = chain.state
    report = compute_supply_report(state)
    try:
        check_invariant(state)
        error = None
    except InvariantViolation as exc:
        error = exc.message
    return {
        "height": chain.height,
        "genesis": report.genesis,
        "minted": report.minted,
        "burned": report.burned,
        "balances": report.balances,
        "stakes": report.stakes,
        "escrow": report.escrow,
        "bonds": report.bonds,
        "held": report.held,
        "issued": report.issued,
        "holds": error is None,
        "error": error,
    }

"""The explorer's one read model: the chain at its head, shaped for the page.

The page asks for this after every block (it learns of blocks from ``/events``), so one
request draws everything: recent blocks and their transactions, accounts, jobs with their
lifecycle, and every dispute with its move-by-move timeline. The shapes reuse the node's own
views (``services.node.views``) where they exist.
"""

from __future__ import annotations

from typing import Any, Final

from contracts_sim.blocks import Block
from contracts_sim.chain import Chain
from contracts_sim.records import Dispute, Job
from services.node.explorer.timeline import dispute_timeline, job_geometry
from services.node.views import dispute_view

JsonObject = dict[str, Any]

MAX_JOBS: Final = 50
MAX_DISPUTES: Final = 50
MAX_ACCOUNTS: Final = 200
MAX_LIFECYCLE_EVENTS: Final = 200


def _block_row(block: Block) -> JsonObject:
    header = block.header
    return {
        "height": header.height,
        "hash": block.hash.hex(),
        "time": header.time,
        "txs": [
            {"hash": tx_hash.hex(), "kind": tx.kind, "sender": tx.sender, "nonce": tx.nonce}
            for tx_hash, tx in zip(block.tx_hashes(), block.transactions, strict=True)
        ],
    }


def recent_blocks(chain: Chain, count: int) -> list[JsonObject]:
    """The ``count`` newest blocks, newest first."""
    head = chain.height
    return [_block_row(chain.get_block(h)) for h in range(head, max(head - count, -1), -1)]


def account_rows(chain: Chain) -> list[JsonObject]:
    """Every account with a balance or stake at the head, richest first."""
    rows: list[JsonObject] = [
        {
            "address": address,
            "balance": account.balance,
            "stake": account.total_stake,
            "locked": account.locked,
            "nonce": account.nonce,
            "jobs_completed": account.jobs_completed,
            "jobs_slashed": account.jobs_slashed,
        }
        for address, account in chain.state.accounts()
    ]
    rows.sort(key=lambda r: (-(r["balance"] + r["stake"]), r["address"]))
    return rows[:MAX_ACCOUNTS]


def job_row(chain: Chain, job: Job) -> JsonObject:
    """A job in brief, with its lifecycle: every event about it (height and kind)."""
    steps, interval = job_geometry(job)
    lifecycle = [
        {"height": e.height, "kind": e.kind}
        for e in chain.history(job_id=job.job_id, limit=MAX_LIFECYCLE_EVENTS)
    ]
    return {
        "job_id": job.job_id,
        "status": job.status.value,
        "submitter": job.submitter,
        "solver": job.solver,
        "payment": job.payment,
        "price": job.price,
        "steps": steps,
        "checkpoint_interval": interval,
        "num_leaves": job.num_leaves,
        "posted_height": job.posted_height,
        "bid_deadline": job.bid_deadline,
        "train_deadline": job.train_deadline,
        "challenge_deadline": job.challenge_deadline,
        "bids": len(job.bids),
        "disputes": list(job.disputes),
        "lifecycle": lifecycle,
    }


def dispute_row(chain: Chain, dispute: Dispute) -> JsonObject:
    job = chain.get_job(dispute.job_id)
    steps, _ = job_geometry(job)
    view = dispute_view(chain, dispute)
    view.pop("moves")  # the timeline says the same, explained
    return {
        **view,
        "steps": steps,
        "num_leaves": job.num_leaves,
        "timeline": dispute_timeline(dispute, job),
    }


def overview(chain: Chain, blocks: int) -> JsonObject:
    """Everything the page draws, at one head (the head is read once, first)."""
    head = chain.head
    state = chain.state
    jobs = sorted(state.jobs(), key=lambda j: (-j.posted_height, j.job_id))[:MAX_JOBS]
    by_opening = sorted(state.disputes(), key=lambda d: (-d.opened_height, d.dispute_id))
    disputes = by_opening[:MAX_DISPUTES]
    return {
        "chain_id": chain.chain_id,
        "height": head.height,
        "head_hash": head.hash.hex(),
        "last_event_id": chain.last_event_id,
        "blocks": recent_blocks(chain, blocks),
        "accounts": account_rows(chain),
        "jobs": [job_row(chain, job) for job in jobs],
        "disputes": [dispute_row(chain, d) for d in disputes],
    }

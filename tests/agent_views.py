"""Typed job views (``services.agents.views``) built in tests, without a chain."""

from __future__ import annotations

from typing import Any

from contracts_sim.records import Job, JobStatus
from protocol.spec import JobSpec
from protocol.types import Address, Amount, Hash32, Height
from services.agents.views import JobView


def job_view_for(spec: JobSpec, **fields: Any) -> JobView:
    """A view of an open job of ``spec`` (any ``Job`` field may be given)."""
    values: dict[str, Any] = {
        "job_id": "ab" * 32,
        "submitter": Address("0x" + "00" * 20),
        "spec": spec.to_dict(),
        "spec_hash": Hash32(bytes(32)),
        "payment": Amount(1000),
        "verification_fee": Amount(0),
        "min_stake": Amount(200),
        "sample_count": 2,
        "bid_blocks": 10,
        "train_blocks": 60,
        "num_leaves": spec.num_leaves,
        "posted_height": Height(0),
        "bid_deadline": Height(10),
        "status": JobStatus.OPEN,
        "escrow": Amount(1000),
    }
    return JobView(Job(**{**values, **fields}), spec)

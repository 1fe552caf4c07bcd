"""A dispute replayed move by move, for drawing: what each move did and what was still disputed.

The ledger keeps a dispute's *current* node or interval and the list of its moves
(``Dispute.moves``). The explorer wants every intermediate state, so this module replays the
moves with the same rules as ``contracts_sim.dispute`` (``root_node``, ``children``,
``segment_interval``, ``bisection_midpoint`` are the ledger's own) and records, after each
move, the Merkle node still disputed (on the *leaves* scale) or the step interval [a, b] (on
the *steps* scale). Nothing here decides anything: it only explains what the chain recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts_sim.dispute import segment_interval
from contracts_sim.records import Dispute, DisputeMove, Job
from protocol.merkle import root_node

JsonObject = dict[str, Any]


@dataclass
class _Cursor:
    """What is disputed so far: a Merkle node [lo, hi) of leaves, or a step interval [a, b]."""

    scale: str | None = None  # "leaves" | "steps"
    lo: int | None = None
    hi: int | None = None
    midpoint: int | None = None


def job_geometry(job: Job) -> tuple[int, int]:
    """(total steps, checkpoint interval C) of the job's spec (the normalised spec dict)."""
    interval = int(job.spec.get("checkpoint_interval") or 1)
    steps = int(job.spec.get("steps") or (job.num_leaves - 1) * interval)
    return steps, interval


def _open(cursor: _Cursor, move: DisputeMove, job: Job, interval: int) -> str:
    data = move.data
    if "sealed" in data:
        return "sealed a challenge: its segment stays hidden until the window closes"
    if data.get("withheld"):
        segment = int(data["segment"])
        cursor.scale = "steps"
        cursor.lo, cursor.hi = segment_interval(segment + 1, interval)
        return f"asked the solver to publish the data of segment {segment}"
    if "segment" in data:
        segment = int(data["segment"])
        cursor.scale = "steps"
        cursor.lo, cursor.hi = segment_interval(segment + 1, interval)
        return (
            f"challenged segment {segment} with proofs of both its leaves "
            f"(fast path): steps [{cursor.lo}, {cursor.hi}] disputed"
        )
    root = root_node(job.num_leaves)
    cursor.scale, cursor.lo, cursor.hi = "leaves", root.lo, root.hi
    return f"challenged the final commitment: leaves [{root.lo}, {root.hi}) disputed"


def _describe(cursor: _Cursor, move: DisputeMove, job: Job, interval: int) -> str:
    """Apply ``move`` to ``cursor``; return one sentence saying what it did."""
    data = move.data
    cursor.midpoint = None
    if move.kind == "challenge":
        return _open(cursor, move, job, interval)
    if move.kind == "reveal_children":
        return f"revealed the two children of leaves [{cursor.lo}, {cursor.hi})"
    if move.kind == "choose_child":
        cursor.scale, cursor.lo, cursor.hi = "leaves", int(data["lo"]), int(data["hi"])
        return f"disputes the {data['side']} child: leaves [{cursor.lo}, {cursor.hi})"
    if move.kind == "reveal_leaf":
        leaf = cursor.lo if cursor.lo is not None else 0
        if leaf == 0:
            return "opened leaf 0; the referee compared it with the initial state"
        cursor.scale = "steps"
        cursor.lo, cursor.hi = segment_interval(leaf, interval)
        return f"opened leaf {leaf}: steps [{cursor.lo}, {cursor.hi}] disputed"
    if move.kind == "post_midpoint":
        cursor.midpoint = int(data["step"])
        return f"posted the state hash at step {cursor.midpoint}"
    if move.kind == "respond_midpoint":
        step = int(data["step"])
        if data.get("agree"):
            cursor.lo = step
            return f"agrees with step {step}: steps [{cursor.lo}, {cursor.hi}] disputed"
        cursor.hi = step
        return f"disagrees with step {step}: steps [{cursor.lo}, {cursor.hi}] disputed"
    if move.kind == "post_prestate":
        return f"posted the pre-state of step {data.get('step')}; the referee re-ran that step"
    if move.kind == "publish_data":
        return f"published the data ({data.get('blob_size')} bytes)"
    if move.kind == "unseal":
        if "segment" not in data:
            return "opened an empty seal: it disputes nothing"
        segment = int(data["segment"])
        cursor.scale = "steps"
        cursor.lo, cursor.hi = segment_interval(segment + 1, interval)
        return f"opened its seal: segment {segment}, steps [{cursor.lo}, {cursor.hi}] disputed"
    if move.kind == "audit":
        segment = int(data["segment"])
        cursor.scale = "steps"
        cursor.lo, cursor.hi = segment_interval(segment + 1, interval)
        return (
            f"audited an attester of the forced error in segment {segment}: "
            f"steps [{cursor.lo}, {cursor.hi}] disputed"
        )
    if move.kind == "reveal_trap":
        return (
            f"revealed the forced error of segment {data.get('segment')}; the referee re-ran "
            "the step with it"
        )
    if move.kind == "claim_timeout":
        return f"claimed the timeout: the {data.get('loser')} missed its {data.get('phase')} move"
    return move.kind


def dispute_timeline(dispute: Dispute, job: Job) -> list[JsonObject]:
    """One entry per move: who moved, when, what it did, and what was disputed afterwards."""
    _, interval = job_geometry(job)
    cursor = _Cursor()
    entries = []
    for index, move in enumerate(dispute.moves):
        text = _describe(cursor, move, job, interval)
        entries.append(
            {
                "index": index,
                "move": move.kind,
                "party": move.party.value,
                "sender": move.sender,
                "height": move.height,
                "text": text,
                "scale": cursor.scale,
                "lo": cursor.lo,
                "hi": cursor.hi,
                "midpoint": cursor.midpoint,
            }
        )
    return entries

"""Operator-level disputes on the ledger (``contracts_sim.operator_dispute``), played by
scripted players (``tests.operator_players``) on real exact-VM traces.

A cheater perturbs one element of op k's output at step s (everything after computed from
it); the game must end with the solver slashed, ``located_step == s`` and ``located_op ==
k``. A false challenger loses its bond; every new phase times out against the party to move;
forged evidence is refused and changes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import pytest

from contracts_sim.params import TEST, Params
from contracts_sim.records import DisputeStatus, JobStatus, Party, Phase
from contracts_sim.testing import LedgerHarness
from protocol.spec import JobSpec, parse_spec
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import committed_job, funded_harness, job
from tests.operator_players import Cheat, World, next_move, play

OPERATOR = replace(TEST, operator_disputes=True)


@functools.cache
def mlp_spec() -> JobSpec:
    return parse_spec(tiny_spec_dict(steps=8))


@functools.cache
def world(spec: JobSpec, cheat: Cheat | None = None) -> World:
    return World(spec, cheat)


def _open(
    spec: JobSpec, solver: World, params: Params = OPERATOR
) -> tuple[LedgerHarness, str, str]:
    h = funded_harness(params=params)
    job_id, _ = committed_job(h, leaves=list(solver.as_run.leaves), spec=spec.to_dict())
    h.advance(1)
    receipt = h.send("v1", "challenge", {"job_id": job_id})
    return h, job_id, str(receipt.event("challenged").data["dispute_id"])


def _until(
    h: LedgerHarness, dispute_id: str, phase: Phase, solver: World, challenger: World
) -> None:
    """Play both sides until the dispute waits in ``phase``."""
    names = {"solver": "solver", "challenger": "v1"}
    while (d := h.state.get_dispute(dispute_id)).phase is not phase:
        assert d.status is DisputeStatus.OPEN
        h.advance(1)
        role, kind, body = next_move(d, solver, challenger)
        h.send(names[role], kind, body)


def _slashed_at(spec: JobSpec, cheat: Cheat, k: int) -> dict[str, Any]:
    solver, honest = world(spec, cheat), world(spec)
    h, job_id, dispute_id = _open(spec, solver)
    receipt = play(h, dispute_id, solver, honest)
    resolved = receipt.event("dispute_resolved").data
    d = h.state.get_dispute(dispute_id)
    assert resolved["loser_role"] == Party.SOLVER, resolved["reason"]
    assert d.status is DisputeStatus.CHALLENGER_WON
    assert job(h, job_id).status is JobStatus.SLASHED
    assert resolved["located_step"] == d.located_step == cheat.step
    assert d.operator is not None and resolved["located_op"] == d.operator.located_op == k
    assert resolved["located_label"] == spec_program_label(spec, k)
    return resolved


def spec_program_label(spec: JobSpec, k: int) -> str:
    from protocol.exact.trace import program_of

    return program_of(spec).nodes[k].label


# --- the cheater is located at its operator ---------------------------------------------------


@pytest.mark.parametrize(
    "k", [9, 13, 16, 24, 31], ids=["forward", "loss_grad", "weight_grad", "momentum", "last"]
)
def test_mlp_cheat_is_located_at_its_operator(k: int) -> None:
    _slashed_at(mlp_spec(), Cheat(step=5, ops=(k,), element=3), k)

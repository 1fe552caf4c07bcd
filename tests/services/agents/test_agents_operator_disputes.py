"""Agents play operator-level disputes (``contracts_sim.operator_dispute``) in-process.

The solver and verifier agents answer every operator phase with
``services.agents.operator_moves`` from their own run of the disputed step. Issue 10: an
honest solver whose state is larger than the 64 MiB ``max_blob_bytes`` (so it could never
post a whole pre-state) wins a false challenge; a solver that perturbs one step is located
to the operator that wrote the perturbed tensor and slashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from contracts_sim.exceptions import UntrainableSpecError
from contracts_sim.jobs import require_trainable
from contracts_sim.params import TEST, Params
from contracts_sim.records import JobStatus
from protocol.exact.trace import program_of
from protocol.layout import state_blob_size
from protocol.merkle import NodeRef, children
from protocol.spec import JobSpec, parse_spec
from services.agents.moves import Move
from services.agents.runner import load_or_create_key
from services.agents.strategy import DisputeView
from services.client import HttpChainClient, Wallet
from services.jobspec import load_spec
from services.ops.localnet import free_port
from services.sim.network import JobTerms, Network
from services.strategies.cheaters import PerturbStep
from services.strategies.verifiers import FalseChallenger
from services.submitter import submit_job
from tests.conftest import EXAMPLE_SPEC, tiny_spec_dict

OPERATOR = replace(TEST, operator_disputes=True, forced_error_bps=0, max_blob_bytes=64 << 20)
OPERATOR_KINDS = {
    "commit_trace",
    "reveal_op",
    "reveal_chunk",
    "name_element",
    "post_pieces",
    "show_overflow",
}


def big_spec() -> JobSpec:
    """Hidden [2048, 2048] with SGD momentum: 4.2M parameters, a state over 64 MiB."""
    model = {"family": "mlp", "input_dim": 16, "hidden": [2048, 2048], "classes": 4}
    return parse_spec(tiny_spec_dict(model=model, steps=2, checkpoint_interval=1, batch_size=4))


def _resolutions(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["data"] for e in job["history"] if e["kind"] == "dispute_resolved"]


def _moves(net: Network, job: dict[str, Any]) -> list[str]:
    (dispute_id,) = job["disputes"]
    return [m["kind"] for m in net.client.get_dispute(dispute_id)["moves"]]


def test_the_whole_state_limit_is_lifted_only_with_operator_disputes() -> None:
    spec = big_spec()
    assert state_blob_size(spec) > 64 << 20
    require_trainable(spec, OPERATOR)
    with pytest.raises(UntrainableSpecError, match="pre-state"):
        require_trainable(spec, replace(OPERATOR, operator_disputes=False))
    # What one element of an operator reads must still fit one post_pieces:
    with pytest.raises(UntrainableSpecError, match="post_pieces"):
        require_trainable(spec, replace(OPERATOR, max_blob_bytes=16 << 10))


def _play(
    params: Params, spec: JobSpec, solver: Any, verifier: Any
) -> tuple[Network, dict[str, Any]]:
    net = Network(params=params)
    net.add_solver("solver", solver)
    net.add_verifier("verifier", verifier)
    net.warm_up()
    job_id = net.post_job(spec, JobTerms(sample_count=spec.num_segments))
    net.run_jobs(job_id, max_rounds=200)
    return net, net.job(job_id)


class SteeredFalseChallenger(FalseChallenger):
    """A false challenger that disputes the output of op ``label``: it steers the trace's
    descent to that op's leaf, then plays honestly (it finds nothing wrong in the chunks and
    names the first element of the last one)."""

    knobs = {"label": "the operator it disputes"}

    def answer_dispute(self, dispute: DisputeView, honest: Move | None) -> Move | None:
        d = dispute.record
        if honest is None or honest.kind != "choose_child" or d.operator is None:
            return honest
        if d.operator.tree != "trace":
            return honest
        assert dispute.spec is not None and d.node_lo is not None and d.node_hi is not None
        nodes = program_of(dispute.spec).nodes
        (target,) = [n.index for n in nodes if n.label == self.knob("label", "")]
        _, right = children(NodeRef(d.node_lo, d.node_hi))
        return Move(honest.kind, {**honest.body, "side": "left" if target < right.lo else "right"})


@pytest.mark.parametrize("label", [None, "layer1.weight.grad"])
def test_honest_solver_over_64_mib_wins_a_false_challenge(label: str | None) -> None:
    """Without a label the challenger agrees with every child: the last op (a bias update);
    with one, a 2048 x 2048 weight gradient whose 8192 chunks are descended too."""
    spec = big_spec()
    challenger = FalseChallenger() if label is None else SteeredFalseChallenger(label=label)
    started = time.perf_counter()
    net, job = _play(OPERATOR, spec, None, challenger)
    elapsed = time.perf_counter() - started
    (resolved,) = _resolutions(job)
    assert resolved["loser_role"] == "challenger", resolved["reason"]
    assert "recomputed to the solver's value" in resolved["reason"]
    assert resolved["located_op"] is not None
    if label is not None:
        assert resolved["located_label"] == label
    moves = _moves(net, job)
    assert OPERATOR_KINDS - {"show_overflow"} <= set(moves)
    assert "post_prestate" not in moves
    assert job["status"] == "settled"
    (forfeited,) = [e["data"] for e in job["history"] if e["kind"] == "bond_forfeited"]
    assert forfeited["amount"] == TEST.challenge_bond
    solver = net.agents[0]
    assert forfeited["beneficiary"] == solver.address
    account = net.client.get_account(solver.address)
    # Paid in full, its stake whole, and the bond's reward on top: nothing lost.
    assert int(account["balance"]) == JobTerms().payment + int(forfeited["reward"])
    assert int(account["bonded"]) == 4 * JobTerms().min_stake
    (dispute_id,) = job["disputes"]
    (posted,) = [
        m["data"] for m in net.client.get_dispute(dispute_id)["moves"] if m["kind"] == "post_pieces"
    ]
    print(
        f"\nstate {state_blob_size(spec):,} bytes; {len(moves)} moves;"
        f" located op {resolved['located_op']} ({resolved['located_label']});"
        f" post_pieces {posted['bytes']:,} bytes;"
        f" {elapsed:.1f} s"
    )


def test_cheating_solver_is_located_at_its_operator_and_slashed() -> None:
    spec = parse_spec(tiny_spec_dict(steps=8, checkpoint_interval=2))
    net, job = _play(replace(TEST, operator_disputes=True), spec, PerturbStep(step=5), None)
    assert job["status"] == "slashed"
    (resolved,) = _resolutions(job)
    assert resolved["loser_role"] == "solver", resolved["reason"]
    assert resolved["located_step"] == 5
    # PerturbStep adds one to the output bias after the step: the op that writes it.
    assert resolved["located_label"] == "layer1.bias.update"
    assert "post_pieces" in _moves(net, job)


# --- over real processes ------------------------------------------------------------------------


def _spawn(logs: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    out = (logs / f"{name}.log").open("ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def _agent(role: str, name: str, chain: str, tmp: Path, *extra: str) -> list[str]:
    return [
        "-m",
        "services.cli",
        role,
        "run",
        "--chain",
        chain,
        "--key",
        str(tmp / f"{name}.key"),
        "--port",
        str(free_port()),
        "--poll",
        "0.1",
        "--allow-private-endpoints",
        "--data-dir",
        str(tmp / name),
        *extra,
    ]


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_over_processes_an_honest_solver_over_64_mib_wins_a_false_challenge(
    tmp_path: Path,
) -> None:
    """The chain node, the solver and a false challenger as separate processes over HTTP."""
    document = yaml.safe_load(EXAMPLE_SPEC.read_text())
    document.update(steps=2, checkpoint_interval=1, batch_size=4)
    document["model"]["hidden"] = [2048, 2048]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    spec, terms = load_spec(path)
    terms = {**terms, "sample_count": spec.num_segments}
    assert state_blob_size(spec) > 64 << 20
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    chain = f"http://127.0.0.1:{port}"
    stake = int(terms["min_stake"])
    strategy = "services.strategies.verifiers:FalseChallenger"
    node = ["-m", "services.cli", "chain", "serve", "--db", f"sqlite:///{tmp_path}/chain.db"]
    node += ["--port", str(port), "--block-time", "0.5", "--dev", "--preset", "testnet-operator"]
    procs = [_spawn(logs, "chain", node)]
    try:
        client = HttpChainClient(chain)
        _wait(lambda: _healthy(chain), 60, "the chain node", logs)
        solver_args = ["--device", "cpu", "--train-budget", "0.5", "--stake", str(stake)]
        procs.append(
            _spawn(logs, "solver", _agent("solver", "solver", chain, tmp_path, *solver_args))
        )
        procs.append(
            _spawn(
                logs,
                "verifier",
                _agent("verifier", "verifier", chain, tmp_path, "--strategy", strategy),
            )
        )
        solver = _wait(lambda: _address(tmp_path / "solver.key"), 60, "the solver's key", logs)
        _wait(lambda: int(client.get_account(solver)["bonded"]) >= stake, 120, "stake", logs)
        wallet = Wallet(load_or_create_key(tmp_path / "submitter.key"), client)
        job_id = submit_job(client, wallet, spec, terms)
        job = _wait(
            lambda: JobStatus((j := client.get_job(job_id))["status"]).is_terminal and j,
            420,
            "the job",
            logs,
        )
        (dispute_id,) = job["disputes"]
        moves = [m["kind"] for m in client.get_dispute(dispute_id)["moves"]]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    assert job["status"] == "settled", job["status"]
    (resolved,) = _resolutions(job)
    assert resolved["loser_role"] == "challenger", resolved["reason"]
    assert "recomputed to the solver's value" in resolved["reason"]
    (forfeited,) = [e["data"] for e in job["history"] if e["kind"] == "bond_forfeited"]
    assert forfeited["beneficiary"] == solver == job["solver"]
    assert OPERATOR_KINDS - {"show_overflow"} <= set(moves)
    assert "post_prestate" not in moves


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _address(key: Path) -> str | None:
    return str(json.loads(key.read_text())["address"]) if key.exists() else None


def _wait(predicate: Any, timeout: float, what: str, logs: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.iterdir()))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")

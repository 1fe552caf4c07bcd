"""End to end over real processes on loopback: chain node, solver and verifier as separate
``proofnet`` processes; the job goes in over REST (httpx) and the model comes back over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeVar

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from protocol.state_commitment import blob_root
from services import cli
from services.agents.runner import load_or_create_key
from services.client import HttpChainClient, Wallet
from services.jobspec import load_spec
from services.ops.localnet import Actor, LocalTestnet, Topology
from services.submitter import submit_job
from tests.conftest import EXAMPLE_SPEC

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
cli._register()
TERMINAL = ("settled", "slashed", "expired", "cancelled")
T = TypeVar("T")
STAKE = int(load_spec(EXAMPLE_SPEC)[1]["min_stake"])  # one job's worth


def small_spec(tmp_path: Path, steps: int, interval: int) -> Path:
    document = yaml.safe_load(EXAMPLE_SPEC.read_text())
    document.update(steps=steps, checkpoint_interval=interval)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def wait_for(
    predicate: Callable[[], T | Literal[False] | None],
    timeout: float,
    what: str,
    net: LocalTestnet | None = None,
) -> T:
    """Poll ``predicate`` until it is truthy; on timeout, fail with the processes' log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    logs = f"\n{net.log_tails()}" if net is not None else ""
    raise AssertionError(f"timed out waiting for {what}{logs}")


def wait_staked(client: HttpChainClient, net: LocalTestnet, stake: int) -> None:
    def staked() -> bool:
        for actor in net.topology.actors:
            account = client.get_account(net.address_of(actor.name))
            need = stake if actor.role == "solver" else int(client.params()["min_verifier_stake"])
            if int(account["bonded"]) + int(account["locked"]) < need:
                return False
            if actor.role == "solver" and not account.get("endpoint"):
                return False
        return True

    wait_for(staked, 120, "agents to stake", net)


@pytest.fixture
def testnet(tmp_path: Path) -> Iterator[Callable[..., LocalTestnet]]:
    nets: list[LocalTestnet] = []

    def make(train_budget: float = 0.5) -> LocalTestnet:
        topology = Topology(
            actors=[Actor("solver", "solver"), Actor("verifier", "verifier")],
            solver_stake=STAKE,
            train_budget=train_budget,
        )
        net = LocalTestnet(tmp_path / "net", topology)
        nets.append(net)
        net.start()
        return net

    yield make
    for net in nets:
        assert net.stop() == [], "every process stops"


def test_job_over_rest_settles_and_the_model_hash_matches(
    testnet: Callable[..., LocalTestnet], tmp_path: Path
) -> None:
    net = testnet()
    client = HttpChainClient(net.topology.chain_url)
    wait_staked(client, net, STAKE)
    spec, terms = load_spec(small_spec(tmp_path, steps=120, interval=20))
    wallet = Wallet(load_or_create_key(tmp_path / "submitter.key"), client)
    job_id = submit_job(client, wallet, spec, terms)

    job = wait_for(
        lambda: (j := client.get_job(job_id))["status"] in TERMINAL and j, 180, "settlement", net
    )
    assert job["status"] == "settled"
    assert job["solver"] == net.address_of("solver")
    assert net.address_of("verifier") in job["attesters"]

    endpoint = client.get_account(job["solver"])["endpoint"]
    model = httpx.get(f"{endpoint}/jobs/{job_id}/model", timeout=10).content
    assert blob_root(model).hex() == job["final_state_hash"]

    # The submitter's command does the same check, reports accuracy and writes safetensors.
    out = tmp_path / "model.safetensors"
    args = ["download", job_id, "--chain", net.topology.chain_url, "--out", str(out), "--json"]
    args.append("--allow-private-endpoints")  # the solver is on loopback
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["final_state_hash"] == job["final_state_hash"]
    assert 0.0 <= report["accuracy"] <= 1.0
    assert out.stat().st_size == report["bytes"] > 0
    supply = client.http.get("/supply").json()
    assert supply["holds"]


def test_solver_killed_mid_training_resumes_and_the_job_settles(
    testnet: Callable[..., LocalTestnet], tmp_path: Path
) -> None:
    net = testnet(train_budget=0.05)  # short training slices: the kill lands mid-training
    client = HttpChainClient(net.topology.chain_url)
    wait_staked(client, net, STAKE)
    spec, terms = load_spec(small_spec(tmp_path, steps=600, interval=20))
    wallet = Wallet(load_or_create_key(tmp_path / "submitter.key"), client)
    job_id = submit_job(client, wallet, spec, terms)
    solver = net.address_of("solver")
    before = client.get_account(solver)

    wait_for(lambda: client.get_job(job_id)["progress_size"] > 0, 120, "a progress commit", net)
    assert client.get_job(job_id)["status"] == "assigned"  # still training
    net.kill("solver")
    time.sleep(1.0)
    net.restart("solver")

    job = wait_for(
        lambda: (j := client.get_job(job_id))["status"] in TERMINAL and j,
        240,
        "settlement after the restart",
        net,
    )
    assert job["status"] == "settled"
    after = client.get_account(solver)
    assert int(after["balance"]) == int(before["balance"]) + int(job["price"])
    assert int(after["bonded"]) + int(after["locked"]) == STAKE  # stake intact
    assert client.http.get("/supply").json()["holds"]

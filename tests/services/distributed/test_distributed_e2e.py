"""A testnet job over real processes trained by ``proofnet solver run --workers 2``: the chain
node and a single-process verifier from ``LocalTestnet``, the solver (rank 0) and its worker
rank as further processes. One worker rank is killed mid-training: the solver restarts its
group, reruns the segment from its last checkpoint, and the job settles with the solver paid
and its stake intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.agents.runner import load_or_create_key
from services.client import HttpChainClient, Wallet
from services.jobspec import load_spec
from services.ops.localnet import Actor, LocalTestnet, Topology, free_port
from services.submitter import submit_job
from tests.services.ops.test_e2e_processes import STAKE, TERMINAL, small_spec, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def worker_ranks(parent: int) -> list[int]:
    """Pids of the spawned worker processes whose parent is ``parent`` (not the resource
    tracker): read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and "spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_workers_2_solver_settles_a_job_after_losing_a_rank(tmp_path: Path) -> None:
    topology = Topology(actors=[Actor("verifier", "verifier")], solver_stake=STAKE)
    net = LocalTestnet(tmp_path / "net", topology)
    net.start()
    solver_proc = None
    try:
        client = HttpChainClient(topology.chain_url)
        key = tmp_path / "solver.key"
        solver = load_or_create_key(key).address
        log = (tmp_path / "solver.log").open("wb")
        solver_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "solver",
                "run",
                "--chain",
                topology.chain_url,
                "--key",
                str(key),
                "--port",
                str(free_port()),
                "--poll",
                "0.1",
                "--allow-private-endpoints",
                "--data-dir",
                str(tmp_path / "solver"),
                "--device",
                "cpu",
                "--train-budget",
                "0.05",
                "--stake",
                str(STAKE),
                "--workers",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

        def staked() -> bool:
            account = client.get_account(solver)
            return int(account["bonded"]) + int(account["locked"]) >= STAKE and bool(
                account.get("endpoint")
            )

        wait_for(staked, 120, "the solver to stake", net)
        net.wait_staked(timeout=120)
        before = client.get_account(solver)
        spec, terms = load_spec(small_spec(tmp_path, steps=600, interval=20))
        wallet = Wallet(load_or_create_key(tmp_path / "submitter.key"), client)
        job_id = submit_job(client, wallet, spec, terms)

        wait_for(lambda: client.get_job(job_id)["progress_size"] > 0, 180, "a progress commit")
        ranks = wait_for(lambda: worker_ranks(solver_proc.pid), 60, "the worker rank")
        assert client.get_job(job_id)["status"] == "assigned"  # still training
        os.kill(ranks[0], signal.SIGKILL)

        job = wait_for(
            lambda: (j := client.get_job(job_id))["status"] in TERMINAL and j,
            300,
            "settlement after the rank was killed",
            net,
        )
        assert job["status"] == "settled"
        assert job["solver"] == solver
        assert net.address_of("verifier") in job["attesters"]
        after = client.get_account(solver)
        assert int(after["balance"]) == int(before["balance"]) + int(job["price"])
        assert int(after["bonded"]) + int(after["locked"]) == STAKE
        restarted = worker_ranks(solver_proc.pid)
        assert restarted and ranks[0] not in restarted  # a new rank took the dead one's place
        assert client.http.get("/supply").json()["holds"]
    finally:
        if solver_proc is not None:
            solver_proc.send_signal(signal.SIGTERM)
            try:
                solver_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                solver_proc.kill()
        assert net.stop() == []
        time.sleep(0.1)

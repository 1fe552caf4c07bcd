"""``proofnet chain serve --dev`` as a real process on a loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from contracts_sim.crypto import key_from_seed
from contracts_sim.transactions import FaucetBody
from protocol.types import Amount
from services.client import HttpChainClient, Wallet

STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proofnet_command() -> list[str]:
    script = Path(sys.executable).parent / "proofnet"
    if script.exists():
        return [str(script)]
    found = shutil.which("proofnet")
    return [found] if found else [sys.executable, "-m", "services.cli"]


@pytest.mark.e2e
def test_chain_serve_dev_answers_health_and_applies_a_faucet_tx(tmp_path: Path) -> None:
    port = free_port()
    db = f"sqlite:///{tmp_path / 'node.db'}"
    command = [
        *proofnet_command(),
        "chain", "serve", "--dev", "--preset", "test", "--chain-id", "e2e",
        "--db", db, "--host", "127.0.0.1", "--port", str(port), "--block-time", "0.2",
        "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the node did not answer /health in time"
            time.sleep(0.2)

        with HttpChainClient(base, timeout=10) as client:
            assert client.chain_id() == "e2e"
            wallet = Wallet(key_from_seed("e2e/alice"), client)
            receipt = wallet.send(FaucetBody(Amount(1_000)), wait=True)
            assert receipt.status == "applied", receipt
            assert receipt.height is not None and receipt.index is not None
            assert client.get_account(wallet.address)["balance"] == 1_000
            assert client.head_height() >= receipt.height
            assert (
                client.get_block(receipt.height).tx_hashes()[receipt.index].hex() == receipt.tx_hash
            )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stdout.read().decode() if process.stdout else ""

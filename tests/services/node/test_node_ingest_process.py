"""kill -9 under load: a real node process, loaded through POST /txs and POST /txs/batch,
killed without warning and started again on its database, keeps every transaction it
acknowledged as applied (same block, same place), holds none twice, and replays from genesis."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts_sim.chain import replay
from contracts_sim.crypto import key_from_seed
from contracts_sim.store import open_store
from contracts_sim.transactions import TransferBody, sign_transaction
from protocol.types import Amount
from tests.services.node.test_node_process import STARTUP_TIMEOUT, free_port, proofnet_command

CHAIN_ID = "kill-test"
KEYS = [key_from_seed(f"kill/{i}") for i in range(4)]
BATCH = 25


def _start(tmp_path: Path, db: str, port: int) -> subprocess.Popen[bytes]:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({key.address: 10**9 for key in KEYS}))
    command = [
        *proofnet_command(),
        "chain", "serve", "--preset", "test", "--chain-id", CHAIN_ID, "--db", db,
        "--genesis", str(genesis), "--host", "127.0.0.1", "--port", str(port),
        "--block-time", "0.2", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the node did not answer /health in time"
        time.sleep(0.2)


def _descendants(pid: int) -> list[int]:
    """The processes ``pid`` started (its signature-checking workers), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Those of ``pids`` still running after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        time.sleep(0.2)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return False


class Load:
    """Threads that send transfers and record what the node acknowledged as applied:
    ``tx_hash -> (height, index)``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.applied: dict[str, tuple[int, int]] = {}
        self.stop = threading.Event()
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def _record(self, receipt: dict[str, Any]) -> None:
        if receipt.get("status") == "applied":
            with self._lock:
                self.applied[receipt["tx_hash"]] = (receipt["height"], receipt["index"])

    def singles(self, key_index: int) -> None:
        key, nonce = KEYS[key_index], 0
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                body = TransferBody(KEYS[0].address, Amount(1))
                tx = sign_transaction(key, CHAIN_ID, nonce, body).to_json()
                try:
                    response = client.post("/txs?wait=true&timeout=5", json=tx)
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    self._record(response.json())
                    nonce += 1
                elif response.status_code != 202:
                    self.errors.append(response.text)
                    return

    def batches(self, key_index: int) -> None:
        key, nonce = KEYS[key_index], 0
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                body = TransferBody(KEYS[1].address, Amount(1))
                txs = [
                    sign_transaction(key, CHAIN_ID, n, body).to_json()
                    for n in range(nonce, nonce + BATCH)
                ]
                try:
                    result = client.post("/txs/batch", json={"txs": txs}).json()
                    hashes = [item["tx_hash"] for item in result["results"]]
                    nonce += BATCH
                    pending = set(hashes)
                    while pending and not self.stop.is_set():
                        time.sleep(0.05)
                        for tx_hash in sorted(pending):
                            receipt = client.get(f"/txs/{tx_hash}").json()
                            if receipt["status"] == "applied":
                                self._record(receipt)
                                pending.discard(tx_hash)
                except (httpx.TransportError, KeyError, ValueError):
                    return


@pytest.mark.e2e
def test_kill_9_under_load_loses_no_acknowledged_transaction(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'node.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    node = _start(tmp_path, db, port)
    load = Load(base)
    workers: list[int] = []
    orphans: list[int] = []
    threads = [
        threading.Thread(target=load.singles, args=(0,)),
        threading.Thread(target=load.singles, args=(1,)),
        threading.Thread(target=load.batches, args=(2,)),
        threading.Thread(target=load.batches, args=(3,)),
    ]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(load.applied) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers += _descendants(node.pid)
        node.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
        node.wait()
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        orphans = _wait_gone(workers, timeout=30)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert workers, "the batches started no verifying worker"
    assert orphans == [], "the killed node's verifying workers outlived it"
    assert load.errors == []
    acknowledged = dict(load.applied)
    assert len(acknowledged) >= 200, "the load did not get far enough before the kill"

    node = _start(tmp_path, db, port)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            for tx_hash, (height, index) in acknowledged.items():
                receipt = client.get(f"/txs/{tx_hash}").json()
                assert receipt["status"] == "applied", (tx_hash, receipt)
                assert (receipt["height"], receipt["index"]) == (height, index)
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
    store = open_store(db)
    try:
        seen: set[bytes] = set()
        for block in store.iter_blocks(0):
            hashes = [tx.tx_hash for tx in block.transactions]
            assert not seen & set(hashes) and len(set(hashes)) == len(hashes)
            seen |= set(hashes)
        assert {bytes.fromhex(h) for h in acknowledged} <= seen
        replay(store)
    finally:
        store.close()

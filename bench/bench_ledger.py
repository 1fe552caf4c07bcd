"""Benchmark: ledger ingest, from raw Ed25519 verification to a real node over HTTP.

    python bench/bench_ledger.py [--quick] [--txs 4000] [--repeats 3] [--block-size 2000]
                                 [--backends sqlite,postgres] [--clients 1,20,50]
                                 [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                 [--state-accounts 1000,10000,100000] [--no-http]
                                 [--json] [--readme PATH]

One run, every variant interleaved round after round (``--repeats``), each reported as the
median and the spread (min-max) of its rounds:

* **verify**: ``verify_signature`` on pre-signed transfers, in this process (1 core), in 2
  threads and in 2 worker processes (the verified-signature memo emptied first each time).
* **in-process**: ``Chain.submit`` one at a time, and ``Chain.submit_many`` (envelopes
  parsed and signatures verified in worker processes while earlier ones are applied), on a
  fresh chain per round for each backend, plus ``produce_block`` every ``--block-size``
  transactions (seal and persist). The transactions are JSON envelopes as a node receives them.
* **http**: a real node process (``proofnet chain serve``, SQLite, one uvicorn process) on
  loopback, loaded by 1, 20 and 50 concurrent clients (asyncio connections with keep-alive)
  through ``POST /txs`` (one transaction a request) and ``POST /txs/batch`` (100 a request);
  tx/s accepted and the request latency's median and p99.
* **state root**: ``LedgerState.state_root()`` after a block of 10 changed accounts at 1k, 10k
  and 100k accounts (``bench_state_root.state_root_seconds``, from the state helper).

``--profile`` adds where the in-process time goes: per transfer, the microseconds of each stage
(parsing and hashing, verifying, the round trip to a worker, applying under the lock, sealing)
and, under cProfile, the share of the sequencer's time of the functions that cost most.

``--quick`` (under a minute): fewer transactions, two rounds, no PostgreSQL run unless asked,
state root at 1k and 10k accounts. ``--readme PATH`` writes the markdown table. PostgreSQL runs
in a throw-away schema and is skipped if the server is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing
import os
import pickle
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from contracts_sim.chain import Chain, EnvelopeChecker
from contracts_sim.crypto import forget_verified, key_from_seed, verify_signature
from contracts_sim.transactions import Transaction, check_envelopes, sign_transaction
from protocol.types import Address

CHAIN_ID = "bench"
DEFAULT_PG = os.environ.get(
    "PROOFNET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
HTTP_BATCH = 100
Triple = tuple[bytes, bytes, bytes]


# --- workloads ------------------------------------------------------------------------------


def make_transfers(
    n: int, accounts: int, tag: str = "bench"
) -> tuple[dict[Address, int], list[dict[str, Any]]]:
    """``n`` signed transfers round-robin over ``accounts`` funded accounts (keys named by
    ``tag``: another tag, other signatures, so no memo has seen them)."""
    keys = [key_from_seed(f"{tag}/{i}") for i in range(accounts)]
    genesis = {k.address: 10**12 for k in keys}
    txs = [
        sign_transaction(
            keys[i % accounts],
            CHAIN_ID,
            i // accounts,
            "transfer",
            {"to": keys[(i + 1) % accounts].address, "amount": 1},
        ).to_json()
        for i in range(n)
    ]
    return genesis, txs


def triples_of(txs: list[dict[str, Any]]) -> list[Triple]:
    parsed = [Transaction.from_json(tx) for tx in txs]
    return [(tx.public_key, tx.signing_bytes(), tx.signature) for tx in parsed]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


# --- verify ---------------------------------------------------------------------------------


def verify_all(triples: list[Triple]) -> int:
    """Verify every triple here, from an empty memo (also what a verifying worker runs)."""
    forget_verified()
    for public_key, message, signature in triples:
        assert verify_signature(public_key, message, signature)
    return len(triples)


def verify_rate(
    triples: list[Triple], workers: int, executor: Any | None, busy: bool = False
) -> float:
    """Signatures verified a second: here, or by ``workers`` of ``executor``; with ``busy``,
    while this thread runs Python meanwhile (as the sequencer does beside the workers)."""
    if executor is None:
        started = time.perf_counter()
        verify_all(triples)
        return len(triples) / (time.perf_counter() - started)
    chunks = [triples[i::workers] for i in range(workers)]
    started = time.perf_counter()
    futures = [executor.submit(verify_all, chunk) for chunk in chunks]
    spin = 0
    while busy and not all(f.done() for f in futures):
        for _ in range(2_000):
            spin += 1
    done = sum(f.result() for f in futures)
    return done / (time.perf_counter() - started)


# --- in-process -----------------------------------------------------------------------------


def run_chain(
    url: str | None,
    genesis: dict[Address, int],
    txs: list[dict[str, Any]],
    block: int,
    parallel: bool,
    cpu_us: list[float] | None = None,
) -> float:
    """tx/s of one fresh chain taking ``txs`` (submit or submit_many) and sealing blocks;
    appends to ``cpu_us`` the CPU this process spent a transaction (the sequencer's and its
    threads', not the workers'): what bounds the rate when every other core is free."""
    checker = EnvelopeChecker(min_parallel=1)
    chain = Chain.open(url, CHAIN_ID, "test", genesis)
    chain.checker = checker
    try:
        if parallel:  # start the workers outside the timing
            list(checker.check_in_chunks(txs[: 2 * checker.workers]))
        forget_verified()
        started, cpu_started = time.perf_counter(), time.process_time()
        for lo in range(0, len(txs), block):
            if parallel:
                results = chain.submit_many(txs[lo : lo + block])
                assert all(isinstance(r, str) for r in results), results[:3]
            else:
                for tx in txs[lo : lo + block]:
                    chain.submit(tx)
            chain.produce_block()
        elapsed = time.perf_counter() - started
        if cpu_us is not None:
            cpu_us.append(1e6 * (time.process_time() - cpu_started) / len(txs))
        assert chain.get_block(1).transactions
        return len(txs) / elapsed
    finally:
        chain.close()
        checker.close()


@contextmanager
def backend_url(backend: str, tmp: Path, pg_url: str) -> Iterator[str | None]:
    """A fresh database of ``backend`` for one run (None: PostgreSQL unreachable)."""
    if backend == "sqlite":
        path = tmp / f"bench-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        path.unlink(missing_ok=True)
        return
    engine = create_engine(pg_url, connect_args={"connect_timeout": 3})
    schema = f"pn_bench_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError:
        engine.dispose()
        yield None
        return
    separator = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


# --- profile --------------------------------------------------------------------------------

PROFILED: dict[str, str] = {
    "apply_transaction (the rules)": "fork.py:apply_transaction",
    "  process_transfer": "tokens.py:process_transfer",
    "  increment_nonce": "fork.py:increment_nonce",
    "  parse_body": "transactions.py:parse_body",
    "  check_transaction": "fork.py:check_transaction",
    "  make_event": "events.py:make_event",
    "dataclasses.replace (all callers)": "dataclasses.py:replace",
    "produce_block": "chain.py:produce_block",
    "  store.commit_block": "store.py:commit_block",
    "  state_root": "state.py:state_root",
    "  tx_root (root_of)": "merkle.py:root_of",
}


def stage_costs(n: int, block: int, tag: str, url: str) -> dict[str, float]:
    """Microseconds per transfer of each stage, one after the other in this process; the
    round trip to a worker counts the sequencer's half (pickling the envelope, unpickling the
    checked transaction)."""
    genesis, txs = make_transfers(n, 200, tag)
    forget_verified()
    started = time.perf_counter()
    parsed = [Transaction.from_json(tx) for tx in txs]
    for tx in parsed:
        _ = tx.tx_hash
    parse_s = time.perf_counter() - started
    forget_verified()
    started = time.perf_counter()
    checked = check_envelopes(parsed)
    verify_s = time.perf_counter() - started
    returned = pickle.dumps(checked, protocol=5)
    started = time.perf_counter()
    pickle.dumps(txs, protocol=5)
    pickle.loads(returned)
    ipc_s = time.perf_counter() - started
    for c in checked:
        c.remember()
    applied = [c.tx for c in checked if c.tx is not None]
    local = EnvelopeChecker(min_parallel=n + 1)  # the memo answers: applying only
    chain = Chain.open(url, CHAIN_ID, "test", genesis)
    chain.checker = local
    apply_s = seal_s = 0.0
    for lo in range(0, n, block):
        started = time.perf_counter()
        chain.submit_many(applied[lo : lo + block])
        sealing = time.perf_counter()
        chain.produce_block()
        apply_s += sealing - started
        seal_s += time.perf_counter() - sealing
    chain.close()
    stages = {
        "parse + hash (worker)": parse_s,
        "verify (worker)": verify_s,
        "to and from a worker (pickle)": ipc_s,
        "apply under the lock (sequencer)": apply_s,
        "seal + persist (sequencer)": seal_s,
    }
    return {name: 1e6 * s / n for name, s in stages.items()}


def profile_section(n: int, block: int, tmp: Path, rounds: int) -> dict[str, Any]:
    """Stage costs on SQLite (median over ``rounds``), and cProfile shares of the
    sequencer's time."""
    runs = []
    for r in range(rounds):
        with backend_url("sqlite", tmp, "") as url:
            assert url is not None
            runs.append(stage_costs(n, block, f"profile-r{r}", url))
    costs = {name: summary([run[name] for run in runs]) for name in runs[0]}
    genesis, txs = make_transfers(n, 200, "profile-cprofile")
    checked = check_envelopes(txs)
    for c in checked:
        c.remember()
    applied = [c.tx for c in checked if c.tx is not None]
    chain = Chain.open(f"sqlite:///{tmp / 'profile.db'}", CHAIN_ID, "test", genesis)
    chain.checker = EnvelopeChecker(min_parallel=n + 1)
    profiler = cProfile.Profile()
    profiler.enable()
    for lo in range(0, n, block):
        chain.submit_many(applied[lo : lo + block])
        chain.produce_block()
    profiler.disable()
    chain.close()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())

    def cumulative(where: str) -> float:
        return max(
            (v[3] for k, v in stats.items() if where in f"{Path(k[0]).name}:{k[2]}"), default=0.0
        )

    shares = {label: 100 * cumulative(where) / total for label, where in PROFILED.items()}
    return {"us_per_tx": costs, "sequencer_share_pct": shares}


# --- http -----------------------------------------------------------------------------------


class Node:
    """``proofnet chain serve`` (SQLite, one uvicorn process) on a loopback port."""

    def __init__(self, tmp: Path, genesis: dict[Address, int]) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        genesis_file = tmp / "http-genesis.json"
        genesis_file.write_text(json.dumps(genesis))
        script = Path(sys.executable).parent / "proofnet"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]
        command += [
            "chain", "serve", "--preset", "test", "--chain-id", CHAIN_ID,
            "--db", f"sqlite:///{tmp / 'http-node.db'}", "--genesis", str(genesis_file),
            "--host", "127.0.0.1", "--port", str(self.port), "--block-time", "1",
            "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, "PROOFNET_MAX_BLOCK_TXS": "200000", "PROOFNET_MAX_BATCH_TXS": "1000"}
        self.log = (tmp / "http-node.log").open("wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp
        )
        deadline = time.monotonic() + 60
        while asyncio.run(_status(self.port, "GET", "/health", b"")) != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the node did not start")
            time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _request(method: str, path: str, body: bytes) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def _status(port: int, method: str, path: str, body: bytes) -> int:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0
    try:
        return (await _exchange(reader, writer, _request(method, path, body)))[0]
    finally:
        writer.close()


async def _client(
    port: int, requests: list[tuple[bytes, int]], latencies: list[float]
) -> tuple[int, int]:
    """Send ``requests`` (encoded, transactions in it) one after another on one connection;
    (transactions accepted, refused)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    accepted = refused = 0
    try:
        for request, count in requests:
            started = time.perf_counter()
            status, body = await _exchange(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            if status == 200 and count > 1:
                result = json.loads(body)
                accepted += result["accepted"]
                refused += result["refused"]
            elif status in (200, 202):
                accepted += 1
            else:
                refused += count
    finally:
        writer.close()
    return accepted, refused


def http_requests(
    keys_txs: list[list[dict[str, Any]]], batch: bool
) -> list[list[tuple[bytes, int]]]:
    """Each client's encoded requests: one transaction each, or batches of ``HTTP_BATCH``."""
    per_client = []
    for txs in keys_txs:
        if batch:
            chunks = [txs[i : i + HTTP_BATCH] for i in range(0, len(txs), HTTP_BATCH)]
            per_client.append(
                [
                    (_request("POST", "/txs/batch", json.dumps({"txs": c}).encode()), len(c))
                    for c in chunks
                ]
            )
        else:
            per_client.append(
                [(_request("POST", "/txs", json.dumps(tx).encode()), 1) for tx in txs]
            )
    return per_client


def http_run(port: int, per_client: list[list[tuple[bytes, int]]]) -> dict[str, float]:
    latencies: list[float] = []

    async def main() -> list[tuple[int, int]]:
        return await asyncio.gather(*(_client(port, reqs, latencies) for reqs in per_client))

    started = time.perf_counter()
    outcomes = asyncio.run(main())
    elapsed = time.perf_counter() - started
    accepted = sum(a for a, _ in outcomes)
    refused = sum(r for _, r in outcomes)
    latencies.sort()
    return {
        "tx_per_s": accepted / elapsed,
        "refused": refused,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def client_transfers(tag: str, clients: int, per_client: int) -> list[list[dict[str, Any]]]:
    """Each client's own sender (no nonce races between clients), ``per_client`` transfers."""
    out = []
    for c in range(clients):
        key = key_from_seed(f"{tag}/{c}")
        to = key_from_seed(f"{tag}/{(c + 1) % clients}").address
        out.append(
            [
                sign_transaction(key, CHAIN_ID, n, "transfer", {"to": to, "amount": 1}).to_json()
                for n in range(per_client)
            ]
        )
    return out


# --- the run --------------------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def timed_rounds(
    rounds: int, variants: dict[str, Callable[[int], float]]
) -> dict[str, list[float]]:
    """Every variant once per round, in order, ``rounds`` times (interleaved)."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds):
        for name, run in variants.items():
            samples[name].append(run(round_))
            print(f"  round {round_ + 1} {name}: {samples[name][-1]:,.0f}", file=sys.stderr)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--txs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--block-size", type=int, default=2_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--backends", default=None)
    parser.add_argument("--clients", default="1,20,50")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--state-accounts", default=None)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--readme", type=Path, default=None)
    args = parser.parse_args()
    quick = args.quick
    n = args.txs or (1_500 if quick else 4_000)
    rounds = args.repeats or (2 if quick else 3)
    backends = (args.backends or ("sqlite" if quick else "sqlite,postgres")).split(",")
    state_sizes = [
        int(a)
        for a in (args.state_accounts or ("1000,10000" if quick else "1000,10000,100000")).split(
            ","
        )
    ]
    clients = [int(c) for c in args.clients.split(",")]
    load_before = load_average()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": " ".join(["python", "bench/bench_ledger.py", *sys.argv[1:]]),
        "txs": n,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "load_before": load_before,
    }

    print("verify ...", file=sys.stderr)
    _genesis, txs = make_transfers(n, args.accounts)
    triples = triples_of(txs[:2_000])
    spawn = multiprocessing.get_context("spawn")
    with ThreadPoolExecutor(2) as threads, ProcessPoolExecutor(2, mp_context=spawn) as processes:
        list(processes.map(verify_all, [triples[:2], triples[2:4]]))  # start both workers
        verify = timed_rounds(
            rounds,
            {
                "1 core": lambda _r: verify_rate(triples, 1, None),
                "2 threads": lambda _r: verify_rate(triples, 2, threads),
                "2 processes": lambda _r: verify_rate(triples, 2, processes),
                "2 threads, main thread busy": lambda _r: verify_rate(triples, 2, threads, True),
                "2 processes, main thread busy": lambda _r: verify_rate(
                    triples, 2, processes, True
                ),
            },
        )
    results["verify"] = {name: summary(s) for name, s in verify.items()}

    print("in-process ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        workloads = [make_transfers(n, args.accounts, f"bench-r{r}") for r in range(rounds)]

        cpu: dict[str, list[float]] = {}

        def in_process(name: str, backend: str, parallel: bool) -> Callable[[int], float]:
            def run(round_: int) -> float:
                genesis_r, txs_r = workloads[round_]
                with backend_url(backend, tmp, args.pg_url) as url:
                    if url is None:
                        return float("nan")
                    spent = cpu.setdefault(name, [])
                    return run_chain(url, genesis_r, txs_r, args.block_size, parallel, spent)

            return run

        names = [
            (f"{b} {'submit_many' if p else 'submit'}", b, p) for b in backends for p in (0, 1)
        ]
        in_proc = timed_rounds(rounds, {name: in_process(name, b, bool(p)) for name, b, p in names})
        results["in_process"] = {
            name: {**summary(s), "cpu_us_per_tx": summary(cpu[name])}
            if s and s[0] == s[0]
            else {"skipped": "unreachable"}
            for name, s in in_proc.items()
        }

        if args.profile:
            print("profile ...", file=sys.stderr)
            results["profile"] = profile_section(n, args.block_size, tmp, rounds)

        if not args.no_http:
            print("http ...", file=sys.stderr)
            results["http"] = http_section(tmp, rounds, clients, quick)

    print("state root ...", file=sys.stderr)
    results["state_root_ms"] = state_root_section(state_sizes, 5 if quick else 15)
    results["load_after"] = load_average()
    results["seconds"] = time.perf_counter() - started

    if args.readme is not None:
        args.readme.write_text(readme(results))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(readme(results))


def http_section(tmp: Path, rounds: int, clients: list[int], quick: bool) -> dict[str, Any]:
    """Both modes at each client count, interleaved, on one node; workloads signed up front."""
    single_total = 400 if quick else 1_000
    batch_total = 2_000 if quick else 5_000
    configs = [(c, batch) for c in clients for batch in (False, True)]
    plans: dict[tuple[int, int, bool], list[list[dict[str, Any]]]] = {}
    for r in range(rounds):
        for c, batch in configs:
            total = batch_total if batch else min(single_total, max(200, 100 * c))
            per = max(1, -(-total // c))
            if batch:
                per = -(-per // HTTP_BATCH) * HTTP_BATCH
            plans[(r, c, batch)] = client_transfers(f"http-r{r}-c{c}-{batch}", c, per)
    genesis: dict[Address, int] = {}
    for plan in plans.values():
        for txs in plan:
            genesis[Address(txs[0]["sender"])] = 10**12
    warm = client_transfers("http-warm", 1, HTTP_BATCH)
    node = Node(tmp, genesis)
    try:
        http_run(node.port, http_requests(warm, True))  # start the node's verifying workers
        samples: dict[str, list[dict[str, float]]] = {}
        for r in range(rounds):
            for c, batch in configs:
                name = f"{c} client{'s' if c > 1 else ''}, {'batch' if batch else 'single'}"
                outcome = http_run(node.port, http_requests(plans[(r, c, batch)], batch))
                samples.setdefault(name, []).append(outcome)
                print(f"  round {r + 1} {name}: {outcome['tx_per_s']:,.0f}", file=sys.stderr)
    finally:
        node.close()
    return {
        name: {
            "tx_per_s": summary([o["tx_per_s"] for o in outs]),
            "p50_ms": statistics.median(o["p50_ms"] for o in outs),
            "p99_ms": statistics.median(o["p99_ms"] for o in outs),
            "refused": sum(o["refused"] for o in outs),
        }
        for name, outs in samples.items()
    }


def state_root_section(sizes: list[int], repeats: int) -> dict[str, Any]:
    try:
        from bench_state_root import state_root_seconds  # bench/ is sys.path[0]
    except ImportError:
        return {"skipped": "bench/bench_state_root.py not found"}
    return {
        str(size): summary([1000 * s for s in state_root_seconds(size, 10, repeats)])
        for size in sizes
    }


def _spread(s: dict[str, float], fmt: str = ",.0f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def readme(r: dict[str, Any]) -> str:
    """The README table: markdown, with the command and the machine's load."""
    lines = [
        f"`{r['command']}` — {r['txs']} signed transfers, {r['rounds']} interleaved rounds, "
        f"{r['cpus']} CPUs, load average {r['load_before']} before / {r['load_after']} after "
        f"({r['seconds']:.0f} s). Median (min–max) over the rounds.",
        "",
        "| what | rate (tx/s) | note |",
        "| --- | --- | --- |",
    ]
    for name, s in r["verify"].items():
        lines.append(f"| Ed25519 verify, {name} | {_spread(s)} | |")
    best_in_process = 0.0
    for name, s in r["in_process"].items():
        if "skipped" in s:
            lines.append(f"| in-process {name} | skipped | {s['skipped']} |")
            continue
        if name.startswith("sqlite"):
            best_in_process = max(best_in_process, s["median"])
        ratio = s["median"] / r["verify"]["1 core"]["median"]
        cpu = s["cpu_us_per_tx"]
        lines.append(
            f"| in-process {name} | {_spread(s)} | {ratio:.2f} × 1-core verify; this "
            f"process's CPU {_spread(cpu)} µs/tx, so ≤ {1e6 / cpu['median']:,.0f} tx/s "
            f"with a core to itself |"
        )
    for name, h in r.get("http", {}).items():
        ratio = h["tx_per_s"]["median"] / best_in_process if best_in_process else 0.0
        lines.append(
            f"| HTTP {name} | {_spread(h['tx_per_s'])} | p50 {h['p50_ms']:.1f} ms, "
            f"p99 {h['p99_ms']:.1f} ms, {ratio:.2f} × in-process SQLite, "
            f"{h['refused']} refused |"
        )
    state = r["state_root_ms"]
    if "skipped" in state:
        lines.append(f"| state root | skipped | {state['skipped']} |")
    else:
        lines += ["", "| state root after a block of 10 changed accounts | ms |", "| --- | --- |"]
        for size, s in state.items():
            lines.append(f"| {int(size):,} accounts | {_spread(s, '.2f')} |")
    if "profile" in r:
        lines += ["", "| in-process stage (per transfer) | µs |", "| --- | --- |"]
        for name, s in r["profile"]["us_per_tx"].items():
            lines.append(f"| {name} | {_spread(s, '.1f')} |")
        lines += ["", "| sequencer's time (cProfile, SQLite) | share |", "| --- | --- |"]
        for name, share in r["profile"]["sequencer_share_pct"].items():
            lines.append(
                f"| {name.strip()}{' (in the above)' if name.startswith(' ') else ''} "
                f"| {share:.1f} % |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

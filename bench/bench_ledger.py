"""Benchmark: signed transfers applied and persisted per second, against raw Ed25519 verification.

    python bench/bench_ledger.py [--txs 10000] [--block-size 2000] [--accounts 200]
                                 [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                 [--backends memory,sqlite,postgres] [--json]

In one run it pre-signs ``--txs`` transfers (round-robin over ``--accounts`` funded accounts),
measures the raw Ed25519 verification rate on exactly those signatures, then for each backend
opens a fresh chain and times ``Chain.submit`` (the envelope as JSON, as a node receives it:
parse, check signature, nonce and balance, apply to the open block) plus ``produce_block`` (seal
and persist block, transactions, events and state rows in one DB transaction) for every block
of ``--block-size`` transactions. Prints tx/s per backend and its ratio to the verify rate.
PostgreSQL runs in a throw-away schema and is skipped if the server is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from contracts_sim.chain import Chain
from contracts_sim.crypto import key_from_seed, verify_signature
from contracts_sim.transactions import Transaction, sign_transaction
from protocol.types import Address

CHAIN_ID = "bench"
DEFAULT_PG = os.environ.get(
    "PROOFNET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def make_transfers(n: int, accounts: int) -> tuple[dict[Address, int], list[dict[str, Any]]]:
    keys = [key_from_seed(f"bench/{i}") for i in range(accounts)]
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


def verify_rate(txs: list[dict[str, Any]]) -> float:
    parsed = [Transaction.from_json(tx) for tx in txs]
    items = [(tx.public_key, tx.signing_bytes(), tx.signature) for tx in parsed]
    started = time.perf_counter()
    for public_key, message, signature in items:
        assert verify_signature(public_key, message, signature)
    return len(items) / (time.perf_counter() - started)


def run_chain(
    url: str | None, genesis: dict[Address, int], txs: list[dict[str, Any]], block: int
) -> dict[str, float]:
    chain = Chain.open(url, CHAIN_ID, "test", genesis)
    submit_s = seal_s = 0.0
    started = time.perf_counter()
    for lo in range(0, len(txs), block):
        t0 = time.perf_counter()
        for tx in txs[lo : lo + block]:
            chain.submit(tx)
        t1 = time.perf_counter()
        chain.produce_block()
        seal_s += time.perf_counter() - t1
        submit_s += t1 - t0
    total = time.perf_counter() - started
    assert chain.get_account(chain.get_block(1).transactions[0].sender).nonce > 0
    chain.close()
    return {
        "tx_per_s": len(txs) / total,
        "seconds": total,
        "submit_s": submit_s,
        "seal_and_persist_s": seal_s,
        "blocks": -(-len(txs) // block),
    }


def pg_schema_url(base: str) -> tuple[str, Any] | None:
    engine = create_engine(base, connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as conn:
            schema = f"pn_bench_{uuid.uuid4().hex[:10]}"
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError:
        engine.dispose()
        return None

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=10_000)
    parser.add_argument("--block-size", type=int, default=2_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    genesis, txs = make_transfers(args.txs, args.accounts)
    results: dict[str, Any] = {
        "txs": args.txs,
        "block_size": args.block_size,
        "accounts": args.accounts,
        "cpus": os.cpu_count(),
        "ed25519_verify_per_s": verify_rate(txs),
        "backends": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            if backend == "memory":
                results["backends"]["memory"] = run_chain(None, genesis, txs, args.block_size)
            elif backend == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
                results["backends"]["sqlite"] = run_chain(url, genesis, txs, args.block_size)
            elif backend == "postgres":
                found = pg_schema_url(args.pg_url)
                if found is None:
                    results["backends"]["postgres"] = {"skipped": f"unreachable: {args.pg_url}"}
                    continue
                url, drop = found
                try:
                    results["backends"]["postgres"] = run_chain(url, genesis, txs, args.block_size)
                finally:
                    drop()
            else:
                parser.error(f"unknown backend {backend!r}")

    if args.json:
        print(json.dumps(results, indent=2))
        return
    verify = results["ed25519_verify_per_s"]
    print(
        f"{args.txs} signed transfers, blocks of {args.block_size}, {args.accounts} accounts, "
        f"{results['cpus']} CPUs"
    )
    print(f"raw Ed25519 verify:        {verify:9.0f} /s")
    for name, r in results["backends"].items():
        if "skipped" in r:
            print(f"{name:<10} skipped ({r['skipped']})")
            continue
        print(
            f"{name:<10} applied+persisted {r['tx_per_s']:9.0f} tx/s   "
            f"ratio to verify {r['tx_per_s'] / verify:5.2f}   "
            f"(submit {r['submit_s']:.2f}s, seal+persist {r['seal_and_persist_s']:.2f}s)"
        )


if __name__ == "__main__":
    main()

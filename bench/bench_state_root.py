"""Benchmark: the cost of the state commitment (``LedgerState.state_root()``).

    python bench/bench_state_root.py [--accounts 1000,10000,100000] [--changed 10]
                                     [--repeats 15] [--heights 100,3000] [--json]

For each state size it builds a state of that many funded accounts and commits it once; then,
``--repeats`` times, does what the chain does per block: copies the head state (``copy()``),
changes ``--changed`` accounts in the copy and times ``state_root()`` (the sparse Merkle tree
re-hashes the changed paths); the copy is the next head. Interleaved with each round it times
what these replaced, on the same rows: SHA-256 of the canonical JSON of the whole state (the
old root) and a copy of every table's dict (the old ``copy()``). A load — ``from_json`` of
every row plus the first ``state_root()``, what ``Chain.open`` does — is timed 3 times. With
``--heights`` it times one block's root at those heights (``begin_block`` records a block hash
and a beacon output every block). Prints median and spread (min-max) in milliseconds.

``state_root_seconds`` is the function other benchmarks call (bench/bench_ledger.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from contracts_sim.env import BlockEnv
from contracts_sim.fork import begin_block
from contracts_sim.records import Account, Supply
from contracts_sim.state import LedgerState, increase_balance
from protocol.hashing import hash_json, sha256
from protocol.types import Address, Amount, Hash32, Height

CHAIN_ID = "bench"


def address(i: int) -> Address:
    return Address("0x" + sha256(i.to_bytes(8, "big")).hex()[:40])


def funded_state(accounts: int) -> LedgerState:
    """``accounts`` accounts of 10**12 tokens each, counted as genesis supply, committed."""
    state = LedgerState()
    for i in range(accounts):
        state.set_account(address(i), Account(balance=Amount(10**12)))
    state.set_supply(Supply(genesis=Amount(10**12 * accounts)))
    state.state_root()
    state.clear_dirty()
    return state


def change_accounts(state: LedgerState, accounts: int, changed: int, round_: int) -> None:
    """Change ``changed`` distinct accounts (a different set each round)."""
    for j in range(changed):
        increase_balance(state, address((round_ * changed + j) * 7919 % accounts), 1)


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def state_root_seconds(accounts: int, changed_keys: int = 10, repeats: int = 15) -> list[float]:
    """Seconds of ``state_root()`` after ``changed_keys`` accounts changed, one per repeat,
    on a state of ``accounts`` accounts."""
    state = funded_state(accounts)
    samples = []
    for round_ in range(repeats):
        change_accounts(state, accounts, changed_keys, round_)
        samples.append(_timed(state.state_root))
    return samples


def _full_json_root(state: LedgerState) -> Hash32:
    """The commitment ``state_root()`` replaced: SHA-256 of the whole state's canonical JSON."""
    return hash_json(state.to_json())


def _copy_dicts(tables: dict[str, dict[Any, Any]]) -> dict[str, dict[Any, Any]]:
    """What ``copy()`` did before the tables were sharded: copy every table's dict."""
    return {table: dict(rows) for table, rows in tables.items()}


def size_row(accounts: int, changed: int, repeats: int, baseline_repeats: int) -> dict[str, Any]:
    """Per round, what the chain does per block: copy the head, change ``changed`` accounts
    in the copy, take its root; the copy is the next head. Interleaved: the old commitment
    and the old copy (every table's dict copied) on the same rows."""
    state = funded_state(accounts)
    plain = {table: dict(state.items(table)) for table in state.to_json()}
    tree, full, copies, dict_copies, writes = [], [], [], [], []
    for round_ in range(repeats):
        start = time.perf_counter()
        head, state = state, state.copy()
        copies.append(time.perf_counter() - start)
        writes.append(_timed(change_accounts, state, accounts, changed, round_))
        tree.append(_timed(state.state_root))
        dict_copies.append(_timed(_copy_dicts, plain))
        if round_ < baseline_repeats:
            full.append(_timed(_full_json_root, state))
        del head
    rows = state.to_json()
    loads = [_timed(lambda: LedgerState.from_json(rows).state_root()) for _ in range(3)]
    return {
        "accounts": accounts,
        "changed_keys": changed,
        "state_root_ms": summary(tree),
        "full_json_hash_ms": summary(full),
        "copy_ms": summary(copies),
        "dict_copy_ms": summary(dict_copies),
        "writes_ms": summary(writes),
        "load_ms": summary(loads),
    }


def height_row(height: int, accounts: int, changed: int, repeats: int) -> dict[str, Any]:
    """One block's commitment at ``height``: begin_block plus ``changed`` accounts."""
    state = funded_state(accounts)
    for h in range(1, height + 1):
        _begin(state, h)
    state.state_root()
    tree, full = [], []
    for round_ in range(repeats):
        _begin(state, height + 1 + round_)
        change_accounts(state, accounts, changed, round_)
        tree.append(_timed(state.state_root))
        full.append(_timed(_full_json_root, state))
    return {
        "height": height,
        "accounts": accounts,
        "rows": sum(state.count(t) for t in state.to_json()),
        "state_root_ms": summary(tree),
        "full_json_hash_ms": summary(full),
    }


def _begin(state: LedgerState, height: int) -> None:
    env = BlockEnv(height=Height(height), time=height, chain_id=CHAIN_ID)
    begin_block(state, env, sha256(b"block%d" % height), sha256(b"beacon%d" % height))


def summary(seconds: list[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    ms = [s * 1000 for s in seconds]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms), "n": len(ms)}


def _cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['median']:.3f} ({stats['min']:.3f}-{stats['max']:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", default="1000,10000,100000")
    parser.add_argument("--changed", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--baseline-repeats", type=int, default=5)
    parser.add_argument("--heights", default="100,3000")
    parser.add_argument("--height-accounts", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [
        size_row(int(n), args.changed, args.repeats, args.baseline_repeats)
        for n in args.accounts.split(",")
        if n
    ]
    heights = [
        height_row(int(h), args.height_accounts, args.changed, args.baseline_repeats)
        for h in args.heights.split(",")
        if h
    ]
    if args.json:
        print(json.dumps({"sizes": sizes, "heights": heights}, indent=2))
        return
    print(f"state_root() after {args.changed} changed accounts; ms, median (min-max)")
    print(f"{'accounts':>9} {'tree':>22} {'full JSON (old)':>24}")
    for row in sizes:
        print(
            f"{row['accounts']:>9} {_cell(row['state_root_ms']):>22} "
            f"{_cell(row['full_json_hash_ms']):>24}"
        )
    print(f"copy() of the head, then {args.changed} writes to the copy; ms")
    print(f"{'accounts':>9} {'copy()':>22} {'dict copy (old)':>24} {'writes':>22}")
    for row in sizes:
        print(
            f"{row['accounts']:>9} {_cell(row['copy_ms']):>22} "
            f"{_cell(row['dict_copy_ms']):>24} {_cell(row['writes_ms']):>22}"
        )
    print("load (from_json + first state_root), ms:")
    for row in sizes:
        print(f"{row['accounts']:>9} {_cell(row['load_ms']):>22}")
    if heights:
        print(f"one block at height H ({args.height_accounts} accounts), ms:")
        print(f"{'height':>9} {'rows':>7} {'tree':>22} {'full JSON (old)':>24}")
        for row in heights:
            print(
                f"{row['height']:>9} {row['rows']:>7} {_cell(row['state_root_ms']):>22} "
                f"{_cell(row['full_json_hash_ms']):>24}"
            )


if __name__ == "__main__":
    main()

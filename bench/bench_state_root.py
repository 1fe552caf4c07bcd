"""Benchmark: the cost of the state commitment (``LedgerState.state_root()``).

    python bench/bench_state_root.py [--accounts 1000,10000,100000] [--changed 10]
                                     [--repeats 15] [--heights 100,3000] [--json]

For each state size it builds a state of that many funded accounts, commits it once, then
``--repeats`` times changes ``--changed`` accounts and times ``state_root()`` (the sparse Merkle
tree re-hashes the changed paths). Interleaved with each sample it times the commitment this
replaced — SHA-256 of the canonical JSON of the whole state — on the same state, so the two
are compared on the same machine load. It also times ``copy()`` (what the chain does to open a
block) and a load: ``from_json`` of every row plus the first ``state_root()`` (what
``Chain.open`` does). With ``--heights`` it times one block's commitment at those heights
(``begin_block`` records a block hash and a beacon output every block). Prints median and
spread (min–max) in milliseconds.

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


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
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


def size_row(accounts: int, changed: int, repeats: int, baseline_repeats: int) -> dict[str, Any]:
    state = funded_state(accounts)
    tree, full, copies = [], [], []
    for round_ in range(repeats):
        change_accounts(state, accounts, changed, round_)
        tree.append(_timed(state.state_root))
        copies.append(_timed(state.copy))
        if round_ < baseline_repeats:
            full.append(_timed(lambda: _full_json_root(state)))
    rows = state.to_json()
    loads = [_timed(lambda: LedgerState.from_json(rows).state_root()) for _ in range(3)]
    return {
        "accounts": accounts,
        "changed_keys": changed,
        "state_root_ms": summary(tree),
        "full_json_hash_ms": summary(full),
        "copy_ms": summary(copies),
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
        full.append(_timed(lambda: _full_json_root(state)))
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
    print(f"{'accounts':>9} {'tree':>22} {'full JSON (old)':>24} {'copy()':>22}")
    for row in sizes:
        print(
            f"{row['accounts']:>9} {_cell(row['state_root_ms']):>22} "
            f"{_cell(row['full_json_hash_ms']):>24} {_cell(row['copy_ms']):>22}"
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

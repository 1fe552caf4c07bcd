"""Benchmark: the sequencer's CPU per signed transfer, signatures already verified.

    python bench/bench_sequencer.py [--txs 3000] [--block 500] [--accounts 200] [--parts]

Signs ``--txs`` transfers among ``--accounts`` accounts, verifies them once in this process
(``check_envelopes``: the verified-signature memo then holds every one, as after the
node's worker processes), and times this process's CPU (``time.process_time``) for
``Chain.submit_many`` and ``produce_block`` on SQLite, in blocks of ``--block``: what the
one sequencer spends on a transaction (the rules, the seal, the store's writes). Prints
microseconds per transfer. To compare two versions, run it alternately in a checkout of
each and report the median and spread of each side (docs/ledger.md, "What one sequencer
costs").

``--parts`` instead times, in this process, interleaved over 7 rounds, three steps a transfer
takes and the forms they replaced: the stored transaction (``envelope_bytes`` against JSON of
``to_json()``), an account change (``account_with`` against ``dataclasses.replace``) and a
transfer's event (``make_event`` against ``to_json_value`` of its data).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from contracts_sim.chain import Chain, EnvelopeChecker
from contracts_sim.crypto import key_from_seed
from contracts_sim.transactions import check_envelopes, sign_transaction
from protocol.types import Amount

CHAIN_ID = "bench-sequencer"


def signed_transfers(count: int, accounts: int) -> tuple[dict[Any, int], list[Any]]:
    keys = [key_from_seed(f"bench-sequencer/{i}") for i in range(accounts)]
    nonces = [0] * accounts
    txs = []
    for i in range(count):
        sender = i % accounts
        body = {"to": keys[(sender + 1) % accounts].address, "amount": 1}
        txs.append(sign_transaction(keys[sender], CHAIN_ID, nonces[sender], "transfer", body))
        nonces[sender] += 1
    return {key.address: 10**9 for key in keys}, txs


def sequencer_us_per_tx(count: int, block: int, accounts: int) -> float:
    genesis, txs = signed_transfers(count, accounts)
    checked = check_envelopes([tx.to_json() for tx in txs])
    for envelope in checked:
        envelope.remember()
    items = [envelope.tx for envelope in checked if envelope.tx is not None]
    with tempfile.TemporaryDirectory() as tmp:
        chain = Chain.open(f"sqlite:///{tmp}/chain.db", CHAIN_ID, "test", genesis)
        chain.checker = EnvelopeChecker(min_parallel=count + 1)  # in this process: memo hits
        started = time.process_time()
        for lo in range(0, count, block):
            results = chain.submit_many(items[lo : lo + block])
            assert all(isinstance(result, str) for result in results), results
            chain.produce_block()
        spent = time.process_time() - started
        chain.close()
    return spent / count * 1e6


def parts_us() -> dict[str, list[float]]:
    """Microseconds per call of each step and the form it replaced, 7 interleaved rounds.
    Imported here: the timing of the whole sequencer also runs on versions without them."""
    from contracts_sim.codec import to_json_value
    from contracts_sim.events import Event, make_event
    from contracts_sim.records import Account
    from contracts_sim.state import account_with

    _, (tx,) = signed_transfers(1, 2)
    account = Account(balance=Amount(10), nonce=3)
    data = {"sender": tx.sender, "to": tx.body["to"], "amount": 5}
    steps: dict[str, Callable[[], Any]] = {
        "stored tx: JSON of to_json()": lambda: json.dumps(
            tx.to_json(), sort_keys=True, separators=(",", ":")
        ),
        "stored tx: envelope_bytes()": lambda: tx.envelope_bytes().decode(),
        "account: dataclasses.replace": lambda: replace(
            account, balance=Amount(account.balance + 1)
        ),
        "account: account_with": lambda: account_with(account, balance=account.balance + 1),
        "event: to_json_value(data)": lambda: Event("transfer", to_json_value(data)),
        "event: make_event": lambda: make_event("transfer", **data),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(7):
        for name, step in steps.items():
            times[name].append(timeit.timeit(step, number=20_000) / 20_000 * 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=3000)
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--parts", action="store_true")
    args = parser.parse_args()
    if args.parts:
        for name, times in parts_us().items():
            spread = f"{min(times):.2f}-{max(times):.2f}"
            print(f"{name:32s} {statistics.median(times):6.2f} us ({spread})")
        return
    print(f"{sequencer_us_per_tx(args.txs, args.block, args.accounts):.1f}")


if __name__ == "__main__":
    main()

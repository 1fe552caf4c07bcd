#!/usr/bin/env python3
"""The compose testnet's scoreboard, read from the chain node's REST API (standard library only).

    testnet-report.py wait-agents CHAIN_URL AGENTS_JSON TIMEOUT
        wait until every solver has bonded the chain's min_solver_stake and every verifier its
        min_verifier_stake (the agents fund and stake themselves from the dev faucet)
    testnet-report.py report CHAIN_URL AGENTS_JSON JOB_ID...
        print one row per job and the balances; exit 0 only if the cheater was slashed on
        every job it won, at least one job settled with an honest solver paid, no honest party
        was slashed, and the supply invariant holds

AGENTS_JSON maps a name (solver-honest-1, solver-cheater, verifier-1, ...) to its address.
Names starting with "solver-cheater" are the cheaters.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any


def get(chain: str, path: str) -> Any:
    with urllib.request.urlopen(chain.rstrip("/") + path, timeout=10) as response:
        return json.load(response)


def wait_agents(chain: str, agents: dict[str, str], timeout: float) -> int:
    body = get(chain, "/params")
    params = body.get("params", body)
    need = {
        name: int(
            params["min_solver_stake"]
            if name.startswith("solver")
            else params["min_verifier_stake"]
        )
        for name in agents
    }
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        waiting = []
        for name, address in agents.items():
            bonded = int(get(chain, f"/accounts/{address}").get("bonded", 0))
            if bonded < need[name]:
                waiting.append(f"{name} ({bonded}/{need[name]})")
        if not waiting:
            print("all agents funded and staked")
            return 0
        line = "waiting for stakes: " + ", ".join(waiting)
        if line != last:
            print(line, flush=True)
            last = line
        if time.monotonic() > deadline:
            print(f"timed out after {timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(1)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def report(chain: str, agents: dict[str, str], job_ids: list[str]) -> int:
    names = {address: name for name, address in agents.items()}
    cheaters = {a for n, a in agents.items() if n.startswith("solver-cheater")}
    problems: list[str] = []
    honest_paid = cheater_slashed = 0

    rows = []
    for job_id in job_ids:
        job = get(chain, f"/jobs/{job_id}")
        solver = job.get("solver") or "-"
        resolved = [e["data"] for e in job.get("history", []) if e["kind"] == "dispute_resolved"]
        located = ",".join(str(r.get("located_step")) for r in resolved) or "-"
        status = job["status"]
        rows.append(
            [
                job_id[:12],
                names.get(solver, solver[:12]),
                status,
                len(job.get("attesters", [])),
                len(resolved),
                located,
            ]
        )
        if solver in cheaters:
            if status == "slashed":
                cheater_slashed += 1
            else:
                problems.append(f"job {job_id[:12]}: the cheater's job ended '{status}'")
        elif status == "settled":
            honest_paid += 1
        elif status == "slashed":
            problems.append(f"job {job_id[:12]}: honest {names.get(solver, solver)} was slashed")
        else:
            problems.append(f"job {job_id[:12]}: ended '{status}'")
    print(table(rows, ["job", "solver", "outcome", "attests", "disputes", "located step"]))
    print()

    rows = []
    for name, address in agents.items():
        acct = get(chain, f"/accounts/{address}")
        rows.append(
            [
                name,
                address,
                acct.get("balance"),
                acct.get("bonded"),
                acct.get("jobs_completed"),
                acct.get("jobs_slashed"),
            ]
        )
        if address not in cheaters and name.startswith("solver") and acct.get("jobs_slashed"):
            problems.append(f"honest {name} has {acct['jobs_slashed']} slashed job(s)")
    print(table(rows, ["account", "address", "balance", "bonded", "completed", "slashed"]))
    print()

    supply = get(chain, "/supply")
    print("supply: " + ", ".join(f"{k}={v}" for k, v in supply.items()))
    if not supply.get("holds"):
        problems.append("the supply invariant does not hold")
    if not cheater_slashed:
        problems.append("no job of the cheater was slashed (did it win one?)")
    if not honest_paid:
        problems.append("no job settled with an honest solver paid")

    print()
    if problems:
        for p in problems:
            print(f"FAIL: {p}")
        return 1
    print(
        f"PASS: {honest_paid} job(s) settled with an honest solver paid, "
        f"{cheater_slashed} cheating job(s) slashed, supply invariant holds"
    )
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("wait-agents", "report"):
        print(__doc__, file=sys.stderr)
        return 2
    chain, agents = argv[1], json.loads(argv[2])
    if argv[0] == "wait-agents":
        return wait_agents(chain, agents, float(argv[3]) if len(argv) > 3 else 300)
    return report(chain, agents, argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

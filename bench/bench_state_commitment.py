"""Benchmark: committing to a checkpoint, SHA-256 of its blob (before) against its state tree.

    python bench/bench_state_commitment.py [--repeats 7] [--json]

For MLP states of about 0.1M, 1M and 4.35M parameters (16 bytes a parameter: the weights and
their momentum, int64), times in one run, interleaved and repeated: encoding the blob, SHA-256
of the blob (the leaf entry before the state tree), the state root from the tensors
(``protocol.state_commitment.records_root``, what a solver computes per checkpoint) and the
root from a blob another party sent (``blob_root``: decode, then the tree). Thread CPU time;
median and spread (min–max) per variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from protocol.exact import init
from protocol.exact.state import State, encode_state, state_records
from protocol.hashing import sha256
from protocol.spec import JobSpec, parse_spec
from protocol.state_commitment import blob_root, records_root

SIZES = {"0.1M": [1024, 64], "1M": [1024, 1024], "4.35M": [2048, 2048]}
ROOT = Path(__file__).resolve().parents[1]


def _spec(hidden: list[int]) -> JobSpec:
    """The digits MLP example with hidden layers ``hidden``."""
    data = yaml.safe_load((ROOT / "examples" / "digits-mlp.yaml").read_text())
    data["model"]["hidden"] = hidden
    return parse_spec(data)


def _cpu_seconds(fn: Callable[[], object]) -> float:
    started = time.thread_time()
    fn()
    return time.thread_time() - started


def _variants(state: State, blob: bytes) -> dict[str, Callable[[], object]]:
    return {
        "encode blob": lambda: encode_state(state),
        "sha256(blob) (before)": lambda: sha256(blob),
        "state root from tensors": lambda: records_root(state_records(state)),
        "state root from a blob": lambda: blob_root(blob),
    }


def measure(repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, sizes in SIZES.items():
        state = init(_spec(sizes))
        blob = encode_state(state)
        variants = _variants(state, blob)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeats):
            for name, fn in variants.items():  # interleaved
                times[name].append(_cpu_seconds(fn))
        results[label] = {
            "blob_mib": round(len(blob) / 2**20, 1),
            "ms": {
                name: {
                    "median": round(1000 * statistics.median(ts), 1),
                    "min": round(1000 * min(ts), 1),
                    "max": round(1000 * max(ts), 1),
                }
                for name, ts in times.items()
            },
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure(args.repeats)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for label, row in results.items():
        print(f"{label} parameters, blob {row['blob_mib']} MiB (thread CPU ms, median [min-max])")
        for name, t in row["ms"].items():
            print(f"  {name:<26} {t['median']:>8.1f}  [{t['min']:.1f}-{t['max']:.1f}]")


if __name__ == "__main__":
    main()

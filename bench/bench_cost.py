"""The ledger's cost model against time: ``step_work`` units vs measured exact step time.

    python bench/bench_cost.py [--repeats 3] [--json] [NAME ...]

``post_job`` bounds a job by work units (``protocol.layout.step_work``: products, activation
values, a fixed cost per step and per parameter tensor) because the referee, a dispute move and
a verifier's sample must fit their deadlines. This measures, for every family, ordinary specs
beside specs built to be slow for their size (a tiny model whose steps are all overhead, pooling
and 1x1 convolutions, an 11x11 fold, 16 one-wide attention heads, a vocabulary softmax over a
2-wide model), the thread CPU time of one exact step (median of ``--repeats``, one thread) and
the nanoseconds per work unit. The model is sound for a preset when no spec's ns/unit is far
above the figure its limits assume (0.06 ns: ``contracts_sim.params.TESTNET``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

from protocol import exact
from protocol.datasets import load_dataset
from protocol.layout import step_work
from protocol.spec import parse_spec

ASSUMED_NS_PER_UNIT = 0.06


def _spec(model: dict[str, Any], dataset: str, batch: int) -> dict[str, Any]:
    return {
        "version": 1,
        "model": model,
        "dataset": {"id": dataset, "hash": load_dataset(dataset).content_hash_hex},
        "seed": 1,
        "steps": 8,
        "batch_size": batch,
        "optimizer": {"name": "sgd", "lr_log2": -8, "momentum": 0.9},
        "checkpoint_interval": 1,
    }


def _mlp(inputs: int, hidden: list[int], classes: int, batch: int, ds: str) -> dict[str, Any]:
    model = {"family": "mlp", "input_dim": inputs, "hidden": hidden, "classes": classes}
    return _spec(model, ds, batch)


def _cnn(image: list[int], conv: list[dict[str, Any]], batch: int, ds: str, **head: Any) -> Any:
    model = {"family": "cnn", "image": image, "conv": conv, "hidden": [], "classes": 2, **head}
    return _spec(model, ds, batch)


def _tf(context: int, batch: int, d: int = 2, heads: int = 1, ff: int = 1, layers: int = 1) -> Any:
    model = {
        "family": "transformer",
        "vocab": 76,
        "context": context,
        "d_model": d,
        "heads": heads,
        "layers": layers,
        "ff": ff,
    }
    return _spec(model, "shakespeare-char", batch)


BLOBS = "blobs-f1024-c2-n100-s1"
CONV3 = {"kernel": 3, "padding": 1, "pool": 2}
CONFIGS: dict[str, dict[str, Any]] = {
    "mlp-tiny": _mlp(16, [16], 4, 8, "synthetic-blobs-v1"),
    "mlp-digits": _mlp(64, [64], 10, 32, "digits"),
    "mlp-1024x2-b256": _mlp(64, [1024, 1024], 10, 256, "digits"),
    "cnn-tiny": _cnn([1, 8, 8], [{"channels": 4, **CONV3}], 8, "digits", hidden=[16], classes=10),
    "cnn-example": _cnn(
        [1, 8, 8],
        [{"channels": 16, **CONV3}, {"channels": 32, **CONV3}],
        32,
        "digits",
        hidden=[64],
        classes=10,
    ),
    "cnn-fold-11x11": _cnn(
        [16, 8, 8],
        [{"channels": 16, "kernel": 1}, {"channels": 1, "kernel": 11, "padding": 10}],
        32,
        BLOBS,
    ),
    "cnn-pool-1x1": _cnn(
        [1, 32, 32],
        [
            {"channels": 1, "kernel": 1, "pool": 2, "pool_type": "avg"},
            {"channels": 1, "kernel": 1, "pool": 2},
            {"channels": 1, "kernel": 1, "pool": 2},
        ],
        2048,
        BLOBS,
    ),
    "tf-minimal": _tf(2, 1),
    "tf-tiny": _tf(8, 4, d=16, heads=2, ff=32),
    "tf-example": _tf(32, 16, d=64, heads=4, ff=256, layers=2),
    "tf-16-heads-of-1": _tf(256, 4, d=16, heads=16),
    "tf-vocab-softmax": _tf(32, 1024),
    "tf-wide-gelu": _tf(4, 128, ff=8192),
    "tf-8-layers-d2": _tf(8, 1024, heads=2, layers=8),
}


def measure(name: str, repeats: int) -> dict[str, Any]:
    spec = parse_spec(CONFIGS[name])
    state = exact.step(spec, exact.init(spec), 0)  # warm: tables, data, allocator
    times = []
    for i in range(1, 1 + repeats):
        started = time.thread_time()
        state = exact.step(spec, state, i)
        times.append(time.thread_time() - started)
    ms = 1000 * statistics.median(times)
    units = step_work(spec)
    return {"name": name, "ms": ms, "units": units, "ns_per_unit": ms * 1e6 / units}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(name, args.repeats) for name in args.names]
    worst = max(r["ns_per_unit"] for r in rows)
    if args.json:
        print(json.dumps({"rows": rows, "worst_ns_per_unit": worst}, indent=2))
        return 0
    print(f"{'spec':<18} {'ms/step':>9} {'work units':>15} {'ns/unit':>8}")
    for r in rows:
        print(f"{r['name']:<18} {r['ms']:>9.2f} {r['units']:>15,} {r['ns_per_unit']:>8.3f}")
    print(f"worst {worst:.3f} ns/unit; the presets assume {ASSUMED_NS_PER_UNIT} ns/unit")
    return 0


if __name__ == "__main__":
    sys.exit(main())

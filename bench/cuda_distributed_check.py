"""CUDA / NCCL check: exact data-parallel roots on GPUs equal the CPU single-process root.

    python bench/cuda_distributed_check.py [--steps 40] [--json]

For a small MLP, CNN and transformer spec (tests/services/distributed/test_distributed.py's),
it trains on the CPU in one process (``protocol.exact.train_trajectory``: the verifier's
root), then on
``services.distributed.WorkerPool``s of NCCL ranks on CUDA, one GPU per rank, for world
sizes 1 and 2 (2 only with two GPUs or more: NCCL refuses two ranks of a group on one GPU),
and compares the roots. Exit status 0 when every root matches, 1 otherwise; without CUDA it
says so and exits 0 (skipped), so it can run anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from protocol.exact import train_trajectory  # noqa: E402
from protocol.merkle import root_of  # noqa: E402
from protocol.spec import JobSpec  # noqa: E402
from services.distributed.pool import PoolConfig, WorkerPool  # noqa: E402
from services.distributed.train import train_shared  # noqa: E402
from services.sim import scenarios  # noqa: E402

SGD = {"name": "sgd", "lr_log2": -3, "momentum": 0.875}
ADAMW = {"name": "adamw", "lr_log2": -7, "beta1": 0.9, "beta2": 0.99, "weight_decay_log2": -8}
CASES = {
    "mlp-sgd": {
        "model": {"family": "mlp", "input_dim": 16, "hidden": [16], "classes": 4},
        "dataset": {"id": "synthetic-blobs-v1"},
        "batch_size": 8,
        "optimizer": SGD,
    },
    "cnn-sgd": {
        "model": {
            "family": "cnn",
            "image": [1, 8, 8],
            "conv": [{"channels": 4, "kernel": 3, "padding": 1, "pool": 2}],
            "hidden": [16],
            "classes": 10,
        },
        "dataset": {"id": "digits"},
        "optimizer": SGD,
    },
    "transformer-adamw": {
        "model": {
            "family": "transformer",
            "vocab": 76,
            "context": 8,
            "d_model": 16,
            "heads": 2,
            "layers": 1,
            "ff": 32,
        },
        "dataset": {"id": "shakespeare-char"},
        "batch_size": 4,
        "optimizer": ADAMW,
    },
}


def spec_of(name: str, steps: int) -> JobSpec:
    return scenarios.spec_for({**CASES[name], "steps": steps, "checkpoint_interval": 10}, seed=3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="a multiple of 10 (40)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device here (the check needs one; nothing was compared)")
        return 0
    gpus = torch.cuda.device_count()
    worlds = [w for w in (1, 2) if w <= gpus]
    rows = []
    cpu_roots = {
        name: root_of(train_trajectory(spec_of(name, args.steps), "cpu").leaves).hex()
        for name in CASES
    }
    for world in worlds:
        with WorkerPool(PoolConfig(world=world, device="cuda", timeout=120)) as pool:
            device = pool.device
            for name in CASES:
                run = train_shared(spec_of(name, args.steps), pool, device)
                root = root_of(run.leaves).hex()
                rows.append(
                    {
                        "case": name,
                        "world": world,
                        "backend": "nccl" if world > 1 else "none (one rank)",
                        "root": root,
                        "cpu_root": cpu_roots[name],
                        "equal": root == cpu_roots[name],
                    }
                )
    report = {
        "gpus": gpus,
        "device_name": torch.cuda.get_device_name(0),
        "worlds": worlds,
        "skipped_worlds": [w for w in (1, 2) if w > gpus],
        "rows": rows,
        "all_equal": all(r["equal"] for r in rows),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{gpus} GPU(s): {report['device_name']}; worlds {worlds}")
        for r in rows:
            print(f"  {r['case']:18} W={r['world']} {r['backend']:16} equal={r['equal']}")
        if report["skipped_worlds"]:
            print(f"  skipped worlds {report['skipped_worlds']}: fewer GPUs than ranks")
    return 0 if report["all_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

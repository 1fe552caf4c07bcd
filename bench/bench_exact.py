"""Benchmark: exact vs native training steps, and the cost of commitments.

    python bench/bench_exact.py [--spec examples/digits-mlp.yaml] [--threads N] [--repeats 3]

In one run on the same data it times (median of repeats):
  * exact steps (fixed-point, float64-carried matmuls, bound checks),
  * native steps (float32 autograd + torch.optim.SGD, the same model and batches),
  * the commitment work for the exact run: canonical state bytes + SHA-256 of every checkpoint
    and the pymerkle tree with its root,
and prints the ratios exact/native and commitment/training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from protocol.exact import NativeTrainer, init, prepare_exact, step
from protocol.exact.state import encode_state
from protocol.hashing import sha256
from protocol.merkle import CommitmentTree
from services.specfile import load_spec


def _median_seconds(fn: Callable[[], None], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/digits-mlp.yaml")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec, _ = load_spec(args.spec)
    device = torch.device("cpu")
    prepare_exact(device)
    steps = spec.steps

    def exact_run() -> None:
        state = init(spec, device)
        for i in range(steps):
            state = step(spec, state, i)

    def native_run() -> None:
        trainer = NativeTrainer(spec, device)
        for _ in range(steps):
            trainer.step()

    states = [init(spec, device)]
    state = states[0]
    for i in range(steps):
        state = step(spec, state, i)
        if (i + 1) % spec.checkpoint_interval == 0:
            states.append(state)

    def commit_run() -> None:
        tree = CommitmentTree()
        for s in states:
            tree.append(sha256(encode_state(s)))
        tree.root()

    exact_run()  # warm-up: caches, allocator, the dataset on device
    native_run()
    exact_s = _median_seconds(exact_run, args.repeats)
    native_s = _median_seconds(native_run, args.repeats)
    commit_s = _median_seconds(commit_run, args.repeats)
    result = {
        "spec": args.spec,
        "steps": steps,
        "checkpoint_interval": spec.checkpoint_interval,
        "leaves": len(states),
        "threads": torch.get_num_threads(),
        "exact_ms_per_step": 1000 * exact_s / steps,
        "native_ms_per_step": 1000 * native_s / steps,
        "exact_over_native": exact_s / native_s,
        "commitment_ms_total": 1000 * commit_s,
        "commitment_over_training": commit_s / exact_s,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"spec {args.spec}: {steps} steps, C = {spec.checkpoint_interval}, "
        f"{len(states)} leaves, {result['threads']} threads, median of {args.repeats}"
    )
    print(f"  exact   {result['exact_ms_per_step']:.3f} ms/step")
    print(f"  native  {result['native_ms_per_step']:.3f} ms/step")
    print(f"  exact / native step time        {result['exact_over_native']:.2f}x")
    print(f"  commitments (hash + tree)       {result['commitment_ms_total']:.1f} ms")
    print(f"  commitment / training time      {100 * result['commitment_over_training']:.2f} %")


if __name__ == "__main__":
    main()

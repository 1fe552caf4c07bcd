"""Benchmark: exact data-parallel step time and bytes all-reduced against the world size.

    python bench/bench_distributed.py [--worlds 1,2,4] [--rounds 3] [--configs a,b]
                                      [--threads 1] [--json]

Configs (default: all): digits-mlp, digits-cnn and text-transformer, the example specs
(examples/*.yaml). World 1 is one process running ``protocol.exact.step`` (the baseline:
no group, no collectives); world W > 1 is a ``services.distributed.WorkerPool`` of W gloo
ranks on this machine (rank 0 here, W - 1 spawned processes), each with ``--threads``
torch threads, running ``shard.shared_step``.

Interleaved and repeated: each of ``--rounds`` rounds visits the world sizes in a freshly
shuffled order; a world size > 1 starts its group (start-up timed separately), runs one
block of K steps of every config (in a shuffled order; steps 0..K-1 from state 0, the same
steps for every world size; the first step of a block is a warm-up and not timed) and stops
the group. Per (config, world) it reports the median per-step wall time over the rounds'
block medians with their spread (min-max), the speed-up against world 1, rank 0's CPU time
per step (its share of the work: it waits in the collectives without CPU), and the bytes one
rank contributes to the step's all-reduces (payload, int64: two collectives, the row sums
dominate; gloo's ring moves about 2 (W - 1) / W times that per rank on the wire). Every
block's end state is checked against world 1's: the bench refuses to report a wrong run.

On a machine with fewer cores than ranks (the project's 2-core box), W ranks share the
cores: the table then shows the cost of the collectives and of the split, not a speed-up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from protocol.exact import init, prepare_exact, set_threads, state_hash, step  # noqa: E402
from protocol.spec import JobSpec  # noqa: E402
from services.distributed.pool import PoolConfig, WorkerPool  # noqa: E402
from services.jobspec import load_spec  # noqa: E402

CONFIGS = {  # name -> (spec file, steps per block)
    "digits-mlp": ("examples/digits-mlp.yaml", 40),
    "digits-cnn": ("examples/digits-cnn.yaml", 20),
    "text-transformer": ("examples/text-transformer.yaml", 6),
}


def spec_of(name: str) -> JobSpec:
    spec, _ = load_spec(ROOT / CONFIGS[name][0])
    return spec


def block_single(spec: JobSpec, steps: int) -> tuple[list[float], list[float], bytes]:
    """Per-step wall and CPU seconds (steps 1..K-1) and the end state's hash, one process."""
    state = init(spec)
    times, cpu = [], []
    for i in range(steps):
        started, started_cpu = time.perf_counter(), time.thread_time()
        state = step(spec, state, i)
        if i:
            times.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
    return times, cpu, state_hash(state)


def block_pool(
    pool: WorkerPool, spec: JobSpec, steps: int
) -> tuple[list[float], list[float], bytes, int]:
    """Per-step wall and rank 0 CPU seconds, end hash and all-reduced bytes per step (rank
    0's payload). Rank 0's thread waits in the collectives without CPU (gloo runs them on
    its own threads), so its CPU time is its share of the step's work."""
    stamps: list[tuple[float, float]] = []
    state = pool.advance(spec, init(spec), 0, 1)  # warm-up step
    bytes_before = pool.collective.reduced_bytes

    def stamp(_done: int = 0) -> None:
        stamps.append((time.perf_counter(), time.thread_time()))

    stamp()
    state = pool.advance(spec, state, 1, steps, on_step=stamp)
    times = [b[0] - a[0] for a, b in itertools.pairwise(stamps)]
    cpu = [b[1] - a[1] for a, b in itertools.pairwise(stamps)]
    per_step = (pool.collective.reduced_bytes - bytes_before) // max(steps - 1, 1)
    return times, cpu, state_hash(state), per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (1)")
    parser.add_argument("--seed", type=int, default=0, help="of the shuffled orders")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    worlds = [int(w) for w in args.worlds.split(",")]
    names = args.configs.split(",")
    set_threads(args.threads)
    prepare_exact(torch.device("cpu"))
    specs = {name: spec_of(name) for name in names}
    rng = random.Random(args.seed)
    medians: dict[tuple[str, int], list[float]] = {(n, w): [] for n in names for w in worlds}
    cpu_medians: dict[tuple[str, int], list[float]] = {key: [] for key in medians}
    traffic: dict[tuple[str, int], int] = {}
    startups: dict[int, list[float]] = {w: [] for w in worlds if w > 1}
    want: dict[str, bytes] = {}
    started_all = time.perf_counter()
    for _ in range(args.rounds):
        for world in rng.sample(worlds, len(worlds)):
            pool = None
            if world > 1:
                t0 = time.perf_counter()
                pool = WorkerPool(PoolConfig(world=world, threads=args.threads, timeout=120))
                pool.start()
                startups[world].append(time.perf_counter() - t0)
            try:
                for name in rng.sample(names, len(names)):
                    steps = CONFIGS[name][1]
                    if pool is None:
                        times, cpu, digest = block_single(specs[name], steps)
                    else:
                        times, cpu, digest, traffic[(name, world)] = block_pool(
                            pool, specs[name], steps
                        )
                    if want.setdefault(name, digest) != digest:
                        raise SystemExit(f"{name}: {world} workers ended on another state")
                    medians[(name, world)].append(statistics.median(times))
                    cpu_medians[(name, world)].append(statistics.median(cpu))
            finally:
                if pool is not None:
                    pool.close()
    report(args, names, worlds, specs, (medians, cpu_medians), traffic, startups, started_all)


def report(
    args: argparse.Namespace,
    names: list[str],
    worlds: list[int],
    specs: dict[str, JobSpec],
    timings: tuple[dict[tuple[str, int], list[float]], dict[tuple[str, int], list[float]]],
    traffic: dict[tuple[str, int], int],
    startups: dict[int, list[float]],
    started_all: float,
) -> None:
    medians, cpu_medians = timings
    rows: list[dict[str, Any]] = []
    for name in names:
        base = statistics.median(medians[(name, 1)]) if (name, 1) in medians else None
        for world in worlds:
            ms = [m * 1e3 for m in medians[(name, world)]]
            median = statistics.median(ms)
            rows.append(
                {
                    "config": name,
                    "batch": specs[name].batch_size,
                    "workers": world,
                    "step_ms": round(median, 2),
                    "spread_ms": [round(min(ms), 2), round(max(ms), 2)],
                    "speedup": round(base * 1e3 / median, 2) if base else None,
                    "rank0_cpu_ms": round(statistics.median(cpu_medians[(name, world)]) * 1e3, 2),
                    "all_reduced_bytes_per_step": traffic.get((name, world), 0),
                }
            )
    summary = {
        "rounds": args.rounds,
        "threads_per_rank": args.threads,
        "group_startup_s": {w: round(statistics.median(s), 2) for w, s in startups.items()},
        "seconds": round(time.perf_counter() - started_all, 1),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{'config':17} {'batch':>5} {'W':>2} {'step ms':>8} {'spread':>15} "
        f"{'vs W=1':>6} {'r0 cpu ms':>9} {'bytes/step':>10}"
    )
    for r in rows:
        spread = f"{r['spread_ms'][0]:.2f}-{r['spread_ms'][1]:.2f}"
        print(
            f"{r['config']:17} {r['batch']:>5} {r['workers']:>2} {r['step_ms']:>8.2f} "
            f"{spread:>15} {r['speedup']:>6.2f} {r['rank0_cpu_ms']:>9.2f} "
            f"{r['all_reduced_bytes_per_step']:>10,}"
        )
    print(
        f"{args.rounds} rounds, {args.threads} thread(s) per rank; group start-up (s): "
        f"{summary['group_startup_s']}; {summary['seconds']} s in all"
    )


if __name__ == "__main__":
    main()

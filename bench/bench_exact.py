"""Benchmark: exact vs idiomatic float32 training steps, the GEMM floor, commitments.

    python bench/bench_exact.py [--threads 1] [--repeats 7] [--configs a,b,...]
                                [--steps-per-block K] [--batch B] [--json]
                                [--no-commitments]

Configs (default: all): mlp-1m and mlp-2m, MLPs of over a million parameters (a 1024-1024
hidden pair, batch 128, on 64- and 1024-feature blobs), cnn (examples/digits-cnn.yaml) and
transformer (examples/text-transformer.yaml; skipped with a note if the file is absent).

For each config, in one process, it trains two runs of the same spec from the same state 0
on the same batches:
  * exact:  ``protocol.exact.step`` (fixed point, float64-carried matmuls, bound checks);
  * native: ``protocol.exact.NativeTrainer`` — the family's idiomatic float32 ``nn.Module``
    with ``torch.optim`` (SGD with momentum or AdamW, the spec's hyperparameters), autograd;
interleaved: in each of ``--repeats`` rounds the variants run, in a freshly shuffled order, a
block of K steps each (each continuing its own run). Per variant it reports the median and
the spread (min-max; quartiles in --json) over the blocks of the per-step time on two clocks:
  * cpu  = ``time.thread_time()``: CPU time of the calling thread (user + system, so the page
    faults of fresh tensors count). With --threads > 1, torch's worker threads are not
    included: read the wall clock then;
  * wall = ``time.perf_counter()``: elapsed time (it includes waiting for the CPU on a loaded
    machine, which thread time does not);
and the exact/native ratio of the medians on each clock.

The GEMM rows time one step's matrix products of each MLP config alone (forward, weight
gradient and input gradient of every layer; integer-valued operands): float64 in the exact
step's layouts against float32 in nn.Linear's, interleaved the same way. They are the floor
of an exact step that carries its products in float64; the row under them splits each step
into its GEMMs and the rest.

The commitments row: for examples/digits-mlp.yaml, every checkpoint's state root (its tensors'
bytes, chunk hashes and state tree: ``protocol.state_commitment``) and the trajectory's Merkle
tree, against the exact training time of the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protocol.datasets import load_dataset
from protocol.exact import NativeTrainer, init, prepare_exact, state_hash, step
from protocol.exact.fixedpoint import ONE
from protocol.exact.state import State
from protocol.layout import STEP_KEY, param_names
from protocol.merkle import CommitmentTree
from protocol.spec import JobSpec, parse_spec, with_steps
from services.jobspec import load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = ROOT / "examples" / "digits-mlp.yaml"
CLOCKS = ("cpu", "wall")
WARMUP = 2


@dataclass(frozen=True)
class Config:
    name: str
    block: int  # default steps per timed block
    dataset: str = ""  # an MLP config: a blobs-f{F}-c{C}-n{N}-s{S} id
    hidden: tuple[int, ...] = ()
    batch: int = 0
    path: str = ""  # otherwise: a spec file under examples/


CONFIGS = {
    "mlp-1m": Config("mlp-1m", 8, "blobs-f64-c10-n640-s1", (1024, 1024), 128),
    "mlp-2m": Config("mlp-2m", 6, "blobs-f1024-c16-n4096-s1", (1024, 1024), 128),
    "cnn": Config("cnn", 40, path="examples/digits-cnn.yaml"),
    "transformer": Config("transformer", 10, path="examples/text-transformer.yaml"),
}


def config_spec(config: Config, steps: int) -> JobSpec | None:
    """The config's spec, trainable for ``steps`` steps; None if its spec file is absent."""
    if config.path:
        path = ROOT / config.path
        if not path.exists():
            return None
        spec, _ = load_spec(path)
        return with_steps(spec, max(spec.steps, steps))
    dataset = load_dataset(config.dataset)
    return parse_spec(
        {
            "version": 1,
            "model": {
                "family": "mlp",
                "input_dim": dataset.num_features,
                "hidden": list(config.hidden),
                "classes": dataset.num_classes,
            },
            "dataset": {"id": config.dataset, "hash": dataset.content_hash_hex},
            "seed": 7,
            "steps": steps,
            "batch_size": config.batch,
            # A smaller rate than the toy's keeps the wide nets from diverging (a diverged
            # exact step is skipped by the overflow rule and would flatter the exact figure).
            "optimizer": {"name": "sgd", "lr_log2": -5, "momentum": 0.875},
            "checkpoint_interval": steps,
        }
    )


def param_count(spec: JobSpec, state: State) -> int:
    return sum(state[name].numel() for name in param_names(spec))


class ExactRun:
    """One exact training run, advanced ``k`` steps at a time."""

    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        self.spec = spec
        self.state = init(spec, device)
        self.first = next(name for name in self.state if name != STEP_KEY)
        self.i = 0
        self.skipped = 0

    def run(self, k: int) -> None:
        for _ in range(k):
            before = self.state[self.first]
            self.state = step(self.spec, self.state, self.i)
            self.skipped += self.state[self.first] is before  # the overflow rule fired
            self.i += 1


class NativeRun:
    """The family's float32 ``nn.Module`` + ``torch.optim``, advanced ``k`` steps at a time."""

    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        self.trainer = NativeTrainer(spec, device)

    def run(self, k: int) -> None:
        for _ in range(k):
            self.trainer.step()


Samples = dict[str, dict[str, list[float]]]


def interleaved(
    variants: dict[str, Callable[[], None]], repeats: int, per_call: int, rng: random.Random
) -> Samples:
    """Per variant and clock, the seconds per unit of each call (one call = ``per_call``
    units), calling the variants in a fresh shuffled order in each of ``repeats`` rounds."""
    samples: Samples = {v: {c: [] for c in CLOCKS} for v in variants}
    names = list(variants)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            variants[name]()
            cpu1, wall1 = time.thread_time(), time.perf_counter()
            samples[name]["cpu"].append((cpu1 - cpu0) / per_call)
            samples[name]["wall"].append((wall1 - wall0) / per_call)
    return samples


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else ms * 3
    return {"median": statistics.median(ms), "q1": q1, "q3": q3, "min": ms[0], "max": ms[-1]}


def summarize(samples: Samples, a: str, b: str) -> dict[str, Any]:
    result: dict[str, Any] = {v: {c: summary(samples[v][c]) for c in CLOCKS} for v in (a, b)}
    result["ratio"] = {c: result[a][c]["median"] / result[b][c]["median"] for c in CLOCKS}
    return result


def bench_config(
    config: Config, block: int, repeats: int, device: torch.device, rng: random.Random
) -> dict[str, Any] | None:
    spec = config_spec(config, WARMUP + block * repeats)
    if spec is None:
        return None
    exact, native = ExactRun(spec, device), NativeRun(spec, device)
    exact.run(WARMUP)  # caches, allocator, the dataset on the device
    native.run(WARMUP)
    samples = interleaved(
        {"exact": lambda: exact.run(block), "native": lambda: native.run(block)},
        repeats,
        block,
        rng,
    )
    model = spec.model
    return {
        "config": config.name,
        "family": model.family,
        "optimizer": spec.optimizer.name,
        "batch_size": spec.batch_size,
        "params": param_count(spec, exact.state),
        "layer_sizes": list(model.layer_sizes()) if model.family == "mlp" else None,
        "steps_per_block": block,
        "exact_skipped_steps": exact.skipped,
        **summarize(samples, "exact", "native"),
    }


Product = tuple[tuple[int, int], tuple[int, int], bool, bool]


def gemm_products(sizes: list[int], batch: int, layout: str) -> list[Product]:
    """(a shape, b shape, a is a transposed view, b is one) of every matmul of one MLP step,
    in the layouts of the exact step (weights stored in x out) or of nn.Linear (out x in)."""
    products: list[Product] = []
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        if layout == "exact":
            products.append(((batch, fan_in), (fan_in, fan_out), False, False))  # a @ W
            products.append(((fan_in, batch), (batch, fan_out), True, False))  # a^T @ g
            if layer > 0:
                products.append(((batch, fan_out), (fan_out, fan_in), False, True))  # g @ W^T
        else:
            products.append(((batch, fan_in), (fan_in, fan_out), False, True))  # x @ W^T
            products.append(((fan_out, batch), (batch, fan_in), True, False))  # g^T @ x
            if layer > 0:
                products.append(((batch, fan_out), (fan_out, fan_in), False, False))  # g @ W
    return products


def bench_gemm(
    sizes: list[int],
    batch: int,
    block: int,
    repeats: int,
    device: torch.device,
    rng: random.Random,
) -> dict[str, Any]:
    """One step's GEMMs, interleaved: float64 in the exact step's layouts and float32 in
    nn.Linear's, with integer-valued operands as the exact carrier has."""
    gen = torch.Generator().manual_seed(0)

    def operand(shape: tuple[int, int], transposed: bool, dtype: torch.dtype) -> torch.Tensor:
        t = torch.randint(-ONE, ONE, shape[::-1] if transposed else shape, generator=gen)
        t = t.to(device, dtype)
        return t.T if transposed else t

    variants = {"f64": ("exact", torch.float64), "f32": ("nn", torch.float32)}
    operands = {
        key: [
            (operand(a, ta, dtype), operand(b, tb, dtype))
            for a, b, ta, tb in gemm_products(sizes, batch, layout)
        ]
        for key, (layout, dtype) in variants.items()
    }

    def run(key: str) -> Callable[[], None]:
        def go() -> None:
            for _ in range(block):
                for a, b in operands[key]:
                    torch.matmul(a, b)

        return go

    for key in operands:
        run(key)()
    samples = interleaved({k: run(k) for k in operands}, repeats, block, rng)
    return summarize(samples, "f64", "f32")


def bench_commitments(repeats: int, device: torch.device) -> dict[str, Any]:
    """Hashing + tree cost of the example spec's checkpoints, against its training time."""
    spec, _ = load_spec(EXAMPLE_SPEC)
    state = init(spec, device)
    states: list[State] = [state]
    started = time.thread_time()
    for i in range(spec.steps):
        state = step(spec, state, i)
        if (i + 1) % spec.checkpoint_interval == 0:
            states.append(state)
    training_ms = 1000 * (time.thread_time() - started)
    samples = []
    for _ in range(repeats):
        started = time.thread_time()
        tree = CommitmentTree()
        for s in states:
            tree.append(state_hash(s))
        tree.root()
        samples.append(time.thread_time() - started)
    commit_ms = 1000 * statistics.median(samples)
    return {
        "spec": str(EXAMPLE_SPEC.relative_to(ROOT)),
        "steps": spec.steps,
        "checkpoint_interval": spec.checkpoint_interval,
        "leaves": len(states),
        "commitment_ms_total": commit_ms,
        "training_ms_total": training_ms,
        "commitment_over_training": commit_ms / training_ms,
    }


def spread(s: dict[str, float]) -> str:
    return f"{s['median']:.4g} ({s['min']:.3g}-{s['max']:.3g})"


def report(result: dict[str, Any]) -> None:
    print(
        f"exact vs native float32 (nn.Module + torch.optim), {result['device']}, "
        f"{result['threads']} thread(s)"
    )
    print(
        f"{result['repeats']} blocks per variant, interleaved in shuffled order; "
        "ms/step: median (min-max)"
    )
    print("cpu = this thread's CPU time, wall = elapsed")
    print()
    print(f"{'config':<22} {'clock':<5} {'exact':>19} {'native':>19} {'ratio':>6}")
    for r in result["configs"]:
        names = [
            f"{r['config']} b{r['batch_size']} {r['optimizer']}",
            f"{r['params']:,} params K={r['steps_per_block']}",
        ]
        for name, clock in zip(names, CLOCKS, strict=True):
            print(
                f"{name:<22} {clock:<5} {spread(r['exact'][clock]):>19} "
                f"{spread(r['native'][clock]):>19} {r['ratio'][clock]:>5.2f}x"
            )
        if r["exact_skipped_steps"]:
            print(f"  note: {r['exact_skipped_steps']} exact steps skipped (overflow rule)")
    for note in result["notes"]:
        print(note)
    for g in result["gemm"]:
        mlp = next(r for r in result["configs"] if r["config"] == g["config"])
        print()
        print(f"GEMMs alone, one step's products of {g['config']}, ms/step:")
        print(f"{'':<22} {'clock':<5} {'float64':>19} {'float32':>19} {'ratio':>6}")
        for clock in CLOCKS:
            print(
                f"{'  (exact / nn layouts)' if clock == 'cpu' else '':<22} {clock:<5} "
                f"{spread(g['f64'][clock]):>19} {spread(g['f32'][clock]):>19} "
                f"{g['ratio'][clock]:>5.2f}x"
            )
        e, n = mlp["exact"]["cpu"]["median"], mlp["native"]["cpu"]["median"]
        g64, g32 = g["f64"]["cpu"]["median"], g["f32"]["cpu"]["median"]
        print(f"  cpu medians: exact  {e:6.2f} = GEMMs {g64:6.2f} + other {e - g64:6.2f}")
        print(f"               native {n:6.2f} = GEMMs {g32:6.2f} + other {n - g32:6.2f}")
        print(f"  exact/native {e / n:.2f}x; floor (f64 GEMMs / native step) {g64 / n:.2f}x")
    commit = result.get("commitments")
    if commit:
        print()
        print(
            f"commitments, {commit['spec']}: {commit['leaves']} leaves "
            f"(C = {commit['checkpoint_interval']}), {commit['steps']} steps"
        )
        print(
            f"  hash + tree {commit['commitment_ms_total']:.1f} ms; exact training "
            f"{commit['training_ms_total']:.0f} ms; "
            f"{100 * commit['commitment_over_training']:.2f} %"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    parser.add_argument("--repeats", type=int, default=7, help="blocks per variant (7)")
    parser.add_argument("--steps-per-block", type=int, default=None, help="K (default: per config)")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated, from {', '.join(CONFIGS)} (default: all)",
    )
    parser.add_argument("--batch", type=int, default=None, help="the MLP configs' batch (128)")
    parser.add_argument("--seed", type=int, default=0, help="of the shuffled orders")
    parser.add_argument("--no-commitments", action="store_true", help="skip that row")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = [s.strip() for s in args.configs.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown} (known: {', '.join(CONFIGS)})")
    device = torch.device("cpu")
    prepare_exact(device)
    rng = random.Random(args.seed)

    results, notes, gemms = [], [], []
    for name in chosen:
        config = CONFIGS[name]
        block = args.steps_per_block or config.block
        if args.batch and not config.path:
            config = dataclasses.replace(config, batch=args.batch)
            block = args.steps_per_block or max(1, config.block * 128 // args.batch)
        r = bench_config(config, block, args.repeats, device, rng)
        if r is None:
            notes.append(f"{name:<22} skipped: {config.path} does not exist (yet)")
            continue
        results.append(r)
        if r["layer_sizes"]:
            gemm = bench_gemm(r["layer_sizes"], r["batch_size"], block, args.repeats, device, rng)
            gemms.append({"config": name, **gemm})
    result: dict[str, Any] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "configs": results,
        "notes": notes,
        "gemm": gemms,
    }
    if not args.no_commitments:
        result["commitments"] = bench_commitments(args.repeats, device)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()

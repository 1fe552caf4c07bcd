"""Benchmark: exact vs idiomatic float32 training steps, and the cost of commitments.

    python bench/bench_exact.py [--threads N] [--repeats 5] [--steps-per-block K]
                                [--sizes toy,256,1024x2,2048x2] [--json]

For each MLP size, in one run on the same batches, it times
  * exact steps: ``protocol.exact.step`` (fixed-point, float64-carried matmuls, bound checks);
  * native steps: idiomatic float32 PyTorch of the same model — an ``nn.Module`` of
    ``nn.Linear`` + ReLU layers, ``torch.optim.SGD(lr, momentum)``, cross-entropy — started
    from the same initial weights and fed the same batches (``protocol.randomness``);
with the two variants interleaved: for each repeat, in a shuffled order, each variant runs a
block of K steps (continuing its own training run). Per variant it reports the median and the
spread (min-max) over the blocks of the per-step time, on two clocks:
  * cpu  = ``time.process_time()``: CPU time of the whole process, all threads (torch's
    intra-op threads included; with N threads it can exceed the wall time);
  * wall = ``time.perf_counter()``: elapsed time;
and the ratio exact/native of the medians on each clock. Interleaving exposes both variants to
the same load; the spread shows how much load there was.

It also prints
  * the float64 / float32 ratio of the GEMMs alone, for the largest size's shapes (forward,
    weight-gradient and input-gradient products of every layer, same layouts as the exact
    step), interleaved the same way — the floor for a carrier that computes in float64;
  * for the example spec: the commitment work (canonical state bytes + SHA-256 of every
    checkpoint and the Merkle tree with its root) against the exact training time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from protocol.datasets import load_dataset
from protocol.exact import ONE, init, prepare_exact, step
from protocol.exact.data import dataset_tensors
from protocol.exact.state import State, encode_state
from protocol.hashing import sha256
from protocol.layout import bias_name, weight_name
from protocol.merkle import CommitmentTree
from protocol.randomness import batch_indices
from protocol.spec import JobSpec, parse_spec, with_steps
from services.specfile import load_spec

EXAMPLE_SPEC = "examples/digits-mlp.yaml"
CLOCKS = ("cpu", "wall")


@dataclass(frozen=True)
class Size:
    name: str
    dataset: str  # "digits" or a blobs-f{F}-c{C}-n{N}-s{S} id
    hidden: tuple[int, ...]
    batch: int
    block: int  # default steps per timed block


SIZES = {
    "toy": Size("toy", "digits", (64,), 32, 50),
    "256": Size("256", "digits", (256,), 32, 40),
    "1024x2": Size("1024x2", "blobs-f64-c10-n640-s1", (1024, 1024), 128, 8),
    "2048x2": Size("2048x2", "blobs-f64-c10-n1280-s1", (2048, 2048), 512, 2),
}


def size_spec(size: Size, steps: int) -> JobSpec:
    """The example spec for ``toy``; otherwise a spec of the same shape of job at ``size``."""
    if size.name == "toy":
        spec, _ = load_spec(EXAMPLE_SPEC)
        interval = spec.checkpoint_interval
        return with_steps(spec, max(spec.steps, interval * math.ceil(steps / interval)))
    dataset = load_dataset(size.dataset)
    return parse_spec(
        {
            "version": 1,
            "model": {
                "family": "mlp",
                "input_dim": dataset.num_features,
                "hidden": list(size.hidden),
                "classes": dataset.num_classes,
            },
            "dataset": {"id": size.dataset, "hash": dataset.content_hash_hex},
            "seed": 7,
            "steps": steps,
            "batch_size": size.batch,
            # A smaller rate than the toy's keeps the wide nets from diverging (a diverged
            # exact step is skipped by the overflow rule and would flatter the exact figure).
            "optimizer": {"name": "sgd", "lr_log2": -5, "momentum": 0.875},
            "checkpoint_interval": steps,
        }
    )


def label(spec: JobSpec) -> str:
    return "-".join(str(w) for w in spec.model.layer_sizes()) + f" b{spec.batch_size}"


def param_count(spec: JobSpec) -> int:
    return sum((a + 1) * b for a, b in itertools.pairwise(spec.model.layer_sizes()))


class ExactRun:
    """One exact training run, advanced ``k`` steps at a time."""

    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        self.spec = spec
        self.state = init(spec, device)
        self.i = 0
        self.skipped = 0

    def run(self, k: int) -> None:
        for _ in range(k):
            before = self.state[weight_name(0)]
            self.state = step(self.spec, self.state, self.i)
            self.skipped += self.state[weight_name(0)] is before  # the overflow rule fired
            self.i += 1


class NativeMLP(nn.Module):
    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class NativeRun:
    """Idiomatic float32 training of the same model, from the same state 0, same batches."""

    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        self.spec = spec
        self.model = NativeMLP(spec.model.layer_sizes()).to(device)
        exact0 = init(spec, device)
        linears = [m for m in self.model.net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, linear in enumerate(linears):
                linear.weight.copy_(exact0[weight_name(layer)].T.to(torch.float32) / ONE)
                linear.bias.copy_(exact0[bias_name(layer)].to(torch.float32) / ONE)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=2.0**spec.optimizer.lr_log2,
            momentum=spec.optimizer.momentum_q16 / ONE,
        )
        train_x, train_y, _, _ = dataset_tensors(spec, device)
        self.train_x = train_x.to(torch.float32) / ONE
        self.train_y = train_y
        self.device = device
        self.i = 0

    def run(self, k: int) -> None:
        n = self.train_x.shape[0]
        for _ in range(k):
            index = torch.tensor(
                batch_indices(self.spec.seed, self.i, self.spec.batch_size, n), device=self.device
            )
            loss = nn.functional.cross_entropy(self.model(self.train_x[index]), self.train_y[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            self.i += 1


def interleaved(
    variants: dict[str, Callable[[], None]], repeats: int, per_call: int, rng: random.Random
) -> dict[str, dict[str, list[float]]]:
    """Per variant and clock, the seconds per unit of each call (one call = ``per_call``
    units), calling the variants in a fresh shuffled order in each of ``repeats`` rounds."""
    samples: dict[str, dict[str, list[float]]] = {v: {c: [] for c in CLOCKS} for v in variants}
    names = list(variants)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            variants[name]()
            cpu1, wall1 = time.process_time(), time.perf_counter()
            samples[name]["cpu"].append((cpu1 - cpu0) / per_call)
            samples[name]["wall"].append((wall1 - wall0) / per_call)
    return samples


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [1000 * s for s in seconds]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms)}


def bench_size(
    size: Size, block: int, repeats: int, device: torch.device, rng: random.Random
) -> dict[str, Any]:
    warmup = 2
    spec = size_spec(size, warmup + block * repeats)
    exact, native = ExactRun(spec, device), NativeRun(spec, device)
    exact.run(warmup)  # caches, allocator, the dataset on the device
    native.run(warmup)
    samples = interleaved(
        {"exact": lambda: exact.run(block), "native": lambda: native.run(block)},
        repeats,
        block,
        rng,
    )
    result: dict[str, Any] = {
        "size": size.name,
        "model": label(spec),
        "params": param_count(spec),
        "steps_per_block": block,
        "exact_skipped_steps": exact.skipped,
    }
    for variant in ("exact", "native"):
        result[variant] = {c: summary(samples[variant][c]) for c in CLOCKS}
    result["ratio"] = {
        c: result["exact"][c]["median"] / result["native"][c]["median"] for c in CLOCKS
    }
    return result


Product = tuple[tuple[int, int], tuple[int, int], bool, bool]


def gemm_products(spec: JobSpec, layout: str) -> list[Product]:
    """(a shape, b shape, a is a transposed view, b is one) of every matmul of one step, in the
    layouts of the exact step (weights stored in x out) or of ``nn.Linear`` (out x in)."""
    b = spec.batch_size
    products: list[Product] = []
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(spec.model.layer_sizes())):
        if layout == "exact":
            products.append(((b, fan_in), (fan_in, fan_out), False, False))  # a @ W
            products.append(((fan_in, b), (b, fan_out), True, False))  # a^T @ g
            if layer > 0:
                products.append(((b, fan_out), (fan_out, fan_in), False, True))  # g @ W^T
        else:
            products.append(((b, fan_in), (fan_in, fan_out), False, True))  # x @ W^T
            products.append(((fan_out, b), (b, fan_in), True, False))  # g^T @ x
            if layer > 0:
                products.append(((b, fan_out), (fan_out, fan_in), False, False))  # g @ W
    return products


GEMM_VARIANTS = {
    "f64": ("exact", torch.float64),
    "f32": ("exact", torch.float32),
    "f32_nn": ("nn", torch.float32),
}


def bench_gemm(
    spec: JobSpec, block: int, repeats: int, device: torch.device, rng: random.Random
) -> dict[str, Any]:
    """One step's GEMMs, interleaved: float64 and float32 in the exact step's layouts, and
    float32 in nn.Linear's; integer-valued operands as the exact carrier has."""
    gen = torch.Generator().manual_seed(0)

    def operand(shape: tuple[int, int], transposed: bool, dtype: torch.dtype) -> torch.Tensor:
        t = torch.randint(-ONE, ONE, shape[::-1] if transposed else shape, generator=gen)
        t = t.to(device, dtype)
        return t.T if transposed else t

    operands = {
        key: [
            (operand(a, ta, dtype), operand(b, tb, dtype))
            for a, b, ta, tb in gemm_products(spec, layout)
        ]
        for key, (layout, dtype) in GEMM_VARIANTS.items()
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
    result: dict[str, Any] = {"model": label(spec)}
    for key in operands:
        result[key] = {c: summary(samples[key][c]) for c in CLOCKS}
    result["ratio"] = {c: result["f64"][c]["median"] / result["f32"][c]["median"] for c in CLOCKS}
    result["ratio_vs_nn"] = {
        c: result["f64"][c]["median"] / result["f32_nn"][c]["median"] for c in CLOCKS
    }
    return result


def bench_commitments(
    exact_ms_per_step: float, repeats: int, device: torch.device
) -> dict[str, Any]:
    """Hashing + tree cost of the example spec's checkpoints, against its training time."""
    spec, _ = load_spec(EXAMPLE_SPEC)
    states: list[State] = [init(spec, device)]
    state = states[0]
    for i in range(spec.steps):
        state = step(spec, state, i)
        if (i + 1) % spec.checkpoint_interval == 0:
            states.append(state)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        tree = CommitmentTree()
        for s in states:
            tree.append(sha256(encode_state(s)))
        tree.root()
        samples.append(time.perf_counter() - started)
    commit_ms = 1000 * statistics.median(samples)
    training_ms = exact_ms_per_step * spec.steps
    return {
        "spec": EXAMPLE_SPEC,
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
        f"exact vs native float32 (nn.Linear + torch.optim.SGD), {result['device']}, "
        f"{result['threads']} thread(s)"
    )
    print(
        f"{result['repeats']} repeats, variants interleaved in shuffled order; "
        "ms/step: median (min-max)"
    )
    print("cpu = process CPU time (all threads), wall = perf_counter elapsed")
    print()
    print(f"{'size':<21} {'clock':<5} {'exact ms/step':>20} {'native ms/step':>20} {'ratio':>6}")
    for r in result["sizes"]:
        names = [r["model"], f"{r['params']:,} params, K={r['steps_per_block']}"]
        for name, clock in zip(names, CLOCKS, strict=True):
            print(
                f"{name:<21} {clock:<5} {spread(r['exact'][clock]):>20} "
                f"{spread(r['native'][clock]):>20} {r['ratio'][clock]:>5.2f}x"
            )
        if r["exact_skipped_steps"]:
            print(f"  note: {r['exact_skipped_steps']} exact steps skipped (overflow rule)")
    for name in result["skipped_sizes"]:
        print(f"{name:<21} not run (see --sizes)")
    gemm = result.get("gemm")
    if gemm:
        print()
        print(f"GEMMs alone, one step's products of {gemm['model']}, ms:")
        print(f"{'':<7} {'float64':<20} {'float32':<20} {'f64/f32':>7} {'f32 nn.Linear':>20}")
        for clock in CLOCKS:
            print(
                f"  {clock:<4} {spread(gemm['f64'][clock]):<20} "
                f"{spread(gemm['f32'][clock]):<20} {gemm['ratio'][clock]:>6.2f}x "
                f"{spread(gemm['f32_nn'][clock]):>20}"
            )
        print("  (float64, float32: the exact step's layouts; f32 nn.Linear: its own)")
        big = next(r for r in result["sizes"] if r["model"] == gemm["model"])
        exact_ms = big["exact"]["wall"]["median"]
        native_ms = big["native"]["wall"]["median"]
        g64, g32 = gemm["f64"]["wall"]["median"], gemm["f32_nn"]["wall"]["median"]
        print(
            f"  wall medians: exact step {exact_ms:.4g} ms = {g64:.4g} GEMMs + "
            f"{exact_ms - g64:.4g} other"
        )
        print(
            f"                native step {native_ms:.4g} ms = {g32:.4g} GEMMs + "
            f"{native_ms - g32:.4g} other"
        )
        print(
            f"  exact/native {big['ratio']['wall']:.2f}x; GEMMs alone (float64 exact layouts"
            f" / nn.Linear) {gemm['ratio_vs_nn']['wall']:.2f}x:"
        )
        print("  the difference is the exact step's non-GEMM work (requantization,")
        print("  int64<->float64 conversions, bound scans) beyond native's own")
    commit = result.get("commitments")
    if commit:
        print()
        print(
            f"commitments, {commit['spec']}: {commit['leaves']} leaves "
            f"(C = {commit['checkpoint_interval']}), {commit['steps']} steps"
        )
        print(
            f"  hash + tree {commit['commitment_ms_total']:.1f} ms; training "
            f"{commit['training_ms_total']:.0f} ms (wall median x steps); "
            f"{100 * commit['commitment_over_training']:.2f} %"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=5, help="blocks per variant")
    parser.add_argument("--steps-per-block", type=int, default=None, help="K (default: per size)")
    parser.add_argument(
        "--sizes",
        default=",".join(SIZES),
        help=f"comma-separated, from {', '.join(SIZES)} (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the shuffled orders")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown} (known: {', '.join(SIZES)})")
    device = torch.device("cpu")
    prepare_exact(device)
    rng = random.Random(args.seed)

    results = []
    for name in chosen:
        size = SIZES[name]
        block = args.steps_per_block or size.block
        results.append(bench_size(size, block, args.repeats, device, rng))
    result: dict[str, Any] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "sizes": results,
        "skipped_sizes": [s for s in SIZES if s not in chosen],
    }
    if results:
        largest = max(results, key=lambda r: r["params"])
        spec = size_spec(SIZES[largest["size"]], 1)
        block = max(1, largest["steps_per_block"])
        result["gemm"] = bench_gemm(spec, block, args.repeats, device, rng)
        toy = next((r for r in results if r["size"] == "toy"), None)
        if toy:
            exact_ms = toy["exact"]["wall"]["median"]
            result["commitments"] = bench_commitments(exact_ms, args.repeats, device)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()

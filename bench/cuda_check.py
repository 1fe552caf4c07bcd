"""CUDA check: train on CUDA and on CPU and compare every committed leaf.

    python bench/cuda_check.py [--spec SPEC ...] [--steps N] [--expect-root HEX] [--out F]

Default: every family and optimizer the examples cover (``EXAMPLES``), each cut to ``--steps``
(default 200; 0 keeps the spec's own).

Run on a machine with an NVIDIA GPU. Prints (and writes as JSON with --out) the device, the
torch version, the exactness self-test result on CUDA, the Merkle root and leaves on CPU with 1
thread, on CPU with all threads and on CUDA, whether every leaf is identical, and exact vs
native step times on CUDA. ``--expect-root`` compares against a root computed elsewhere (e.g.
on the development machine with another torch build). Exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from protocol.exact import NativeTrainer, evaluate, metric_name, train_trajectory
from protocol.exact.device import SELFTEST_DIGEST, selftest_digest
from protocol.merkle import root_of
from protocol.spec import with_steps
from services.jobspec import load_spec

EXAMPLES = [
    "examples/digits-mlp.yaml",
    "examples/digits-mlp-adamw.yaml",
    "examples/digits-cnn.yaml",
    "examples/text-transformer.yaml",
]


def _trajectory(spec, device: str, threads: int) -> dict[str, object]:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    traj = train_trajectory(spec, device, keep_blobs=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "device": device,
        "threads": threads,
        "seconds": round(seconds, 3),
        "ms_per_step": round(1000 * seconds / spec.steps, 3),
        "root": root_of(traj.leaves).hex(),
        "leaves": [leaf.hex() for leaf in traj.leaves],
        "metric": metric_name(spec),
        "value": evaluate(spec, traj.final_state),
    }


def _native_ms_per_step(spec, device: str) -> float:
    trainer = NativeTrainer(spec, device)
    for _ in range(20):
        trainer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    timed = max(spec.steps - 20, 20)
    for _ in range(timed):
        trainer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return round(1000 * (time.perf_counter() - started) / timed, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description="Compare exact training on CUDA and CPU.")
    parser.add_argument("--spec", action="append", default=None)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--expect-root", action="append", default=[])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    specs = args.spec or EXAMPLES
    report: dict[str, object] = {
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "runs": [],
    }
    ok = True
    if torch.cuda.is_available():
        digest = selftest_digest(torch.device("cuda"))
        report["cuda_selftest_ok"] = digest == SELFTEST_DIGEST
        ok &= digest == SELFTEST_DIGEST
    all_threads = torch.get_num_threads()
    for index, path in enumerate(specs):
        spec, _ = load_spec(path)
        if args.steps and args.steps < spec.steps:
            steps = args.steps - args.steps % spec.checkpoint_interval or spec.checkpoint_interval
            spec = with_steps(spec, steps)
        runs = [_trajectory(spec, "cpu", 1), _trajectory(spec, "cpu", all_threads)]
        if torch.cuda.is_available():
            _trajectory(spec, "cuda", all_threads)  # warm-up (kernels, allocator)
            runs.append(_trajectory(spec, "cuda", all_threads))
        identical = all(r["leaves"] == runs[0]["leaves"] for r in runs)
        entry: dict[str, object] = {
            "spec": path,
            "steps": spec.steps,
            "leaves": len(runs[0]["leaves"]),
            "all_leaves_identical": identical,
            "runs": [{k: v for k, v in r.items() if k != "leaves"} for r in runs],
        }
        if index < len(args.expect_root):
            entry["expected_root"] = args.expect_root[index]
            entry["matches_expected_root"] = runs[0]["root"] == args.expect_root[index]
            ok &= bool(entry["matches_expected_root"])
        if torch.cuda.is_available():
            entry["native_cuda_ms_per_step"] = _native_ms_per_step(spec, "cuda")
        entry["native_cpu_ms_per_step"] = _native_ms_per_step(spec, "cpu")
        ok &= identical
        report["runs"].append(entry)  # type: ignore[union-attr]
    report["ok"] = ok
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures and markers for the ProofNet test suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from protocol.datasets import load_dataset
from protocol.spec import JobSpec, parse_spec

# In-process tests run torch on one thread: exact results do not depend on it (the thread
# determinism tests train in subprocesses with explicit counts), and on a 2-core machine shared
# with the agents' processes the tests start, tiny float64 products ran up to 30x slower on two.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = ROOT / "examples" / "digits-mlp.yaml"


def train_in_subprocess(spec_path: Path, threads: int, steps: int) -> dict[str, Any]:
    """``proofnet train SPEC --json`` on the CPU in a fresh process (torch's thread pool is per
    process, so thread-count determinism needs one process per count)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "train",
            str(spec_path),
            "--threads",
            str(threads),
            "--steps",
            str(steps),
            "--device",
            "cpu",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none available here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def tiny_spec_dict(**overrides: object) -> dict[str, object]:
    """A fast spec on the synthetic blobs: 16-16-4 MLP, 32 steps, C = 4."""
    data: dict[str, object] = {
        "version": 1,
        "model": {"family": "mlp", "input_dim": 16, "hidden": [16], "classes": 4},
        "dataset": {
            "id": "synthetic-blobs-v1",
            "hash": load_dataset("synthetic-blobs-v1").content_hash_hex,
        },
        "seed": 3,
        "steps": 32,
        "batch_size": 8,
        "optimizer": {"name": "sgd", "lr_log2": -3, "momentum": 0.875},
        "checkpoint_interval": 4,
    }
    data.update(overrides)
    return data


@pytest.fixture
def tiny_spec() -> JobSpec:
    return parse_spec(tiny_spec_dict())

"""CUDA and CPU commit identical bits (runs only where CUDA is present)."""

from __future__ import annotations

import pytest
import torch

from protocol.exact import decode_state, run, state_hash, train_trajectory
from protocol.exact.device import SELFTEST_DIGEST, selftest_digest
from protocol.spec import JobSpec, with_steps
from services.jobspec import load_spec
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.gpu


def test_cuda_passes_the_exactness_selftest() -> None:
    assert selftest_digest(torch.device("cuda")) == SELFTEST_DIGEST


def test_cuda_and_cpu_leaves_are_identical(tiny_spec: JobSpec) -> None:
    assert train_trajectory(tiny_spec, "cuda").leaves == train_trajectory(tiny_spec, "cpu").leaves


def test_example_on_cuda_matches_cpu() -> None:
    spec, _ = load_spec(EXAMPLE_SPEC)
    cuda = train_trajectory(spec, "cuda", keep_blobs=False)
    cpu = train_trajectory(spec, "cpu", keep_blobs=False)
    assert cuda.leaves == cpu.leaves


def test_cpu_checkpoint_replayed_on_cuda(tiny_spec: JobSpec) -> None:
    cpu = train_trajectory(tiny_spec, "cpu")
    pre = decode_state(cpu.blobs[cpu.leaves[2]], device="cuda")
    post = run(tiny_spec, pre, 8, 12)
    assert state_hash(post) == cpu.leaves[3]


EXAMPLES = ["digits-mlp-adamw.yaml", "digits-cnn.yaml", "text-transformer.yaml"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_family_and_optimizer_on_cuda_matches_cpu(example: str) -> None:
    spec, _ = load_spec(EXAMPLE_SPEC.parent / example)
    spec = with_steps(spec, 4 * spec.checkpoint_interval if spec.steps > 200 else spec.steps)
    cuda = train_trajectory(spec, "cuda", keep_blobs=False)
    cpu = train_trajectory(spec, "cpu", keep_blobs=False)
    assert cuda.leaves == cpu.leaves

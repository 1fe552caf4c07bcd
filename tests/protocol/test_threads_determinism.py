"""Acceptance: the same job trained with 1 and 2 CPU threads commits identical bits.

Runs the real CLI in subprocesses, because torch's thread pool is per process.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import EXAMPLE_SPEC, train_in_subprocess


def _train(threads: int, steps: int) -> dict[str, Any]:
    return train_in_subprocess(EXAMPLE_SPEC, threads, steps)


def test_one_and_two_threads_commit_identical_roots() -> None:
    one = _train(1, 250)
    two = _train(2, 250)
    assert (one["threads"], two["threads"]) == (1, 2)
    assert one["steps"] == 250
    assert one["root"] == two["root"]
    assert one["final_state_hash"] == two["final_state_hash"]
    assert one["leaves"] == 6

"""bench/bench_operator_dispute.py on tiny specs (--quick): what it counts is what a dispute
posts (the bench itself checks its counts against real chunk proofs and every element
against the run's output, and fails otherwise), and its table fits 80 columns."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

from protocol.hashing import sha256
from protocol.merkle import inclusion_path
from tests.conftest import ROOT

BENCH = ROOT / "bench" / "bench_operator_dispute.py"


def _bench() -> ModuleType:
    """The bench as a module (bench/ is not a package; registered so its dataclasses
    resolve their annotations)."""
    name = "bench_operator_dispute"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    command = [sys.executable, str(BENCH), "--quick", "--json", "--rounds", "1", "--samples", "1"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_path_length_is_the_inclusion_path_length() -> None:
    bench = _bench()
    for size in range(1, 41):
        entries = [sha256(bytes([i])) for i in range(size)]
        for index in range(size):
            assert bench.path_length(index, size) == len(inclusion_path(entries, index))


def test_quick_run_reports_every_operator_and_the_worst(report: dict[str, Any]) -> None:
    assert [m["model"] for m in report["models"]] == ["mlp quick", "transformer quick"]
    for model in report["models"]:
        ops = model["operators_all"]
        assert len(ops) == model["operators"]
        worst = model["worst"]
        assert worst["macs"] == max(op["macs"] for op in ops) > 0
        assert worst["kind"] in ("matmul_nt", "attention_scores", "rms_gain_grad")
        assert worst["macs_ratio"] == worst["macs"] / model["step"]["macs_counted"]
        assert worst["macs_ratio"] < worst["bound"]
        assert model["step"]["macs_products"] <= model["step"]["step_work_products"]
        assert model["rounds"]["phase2_descents"] == math.ceil(math.log2(len(ops)))
        for op in ops:
            assert op["bytes"] >= 32 * op["hashes"]
            assert op["phase3_descents"] == math.ceil(math.log2(max(op["output_chunks"], 1)))
        kinds = {op["kind"] for op in ops}
        assert {row["kind"] for row in model["per_kind"]} == kinds


def test_table_fits_80_columns(report: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    for model in report["models"]:
        bench.print_model(model)
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(line) for line in lines) <= 80

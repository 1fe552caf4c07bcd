"""The local testnet and demo as a user meets them: ``--chain`` from ``$PROOFNET_CHAIN``, key
files that fail in one line, examples found from any directory, ``testnet up|status|down`` at
80 columns, and ``adversaries report`` printing where it is told.

Everything but the last test runs without starting a process; the last starts a real testnet
(``e2e``, ``slow``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from services.cli.common import (
    CHAIN_ENV,
    DEFAULT_CHAIN,
    ChainOpt,
    load_key_file,
    reported_errors,
    resolve_spec_path,
)
from services.errors import ExampleNotFoundError, KeyFileError, PortInUseError
from services.ops.localnet import (
    STATE_FILE,
    LocalTestnet,
    Topology,
    default_topology,
)
from tests.conftest import ROOT

WIDTH = 80


def _fits(text: str) -> None:
    """Every line within 80 columns, and nothing cut with an ellipsis."""
    for line in text.splitlines():
        assert len(line) <= WIDTH, line
    assert "…" not in text


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 something is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _cli() -> typer.Typer:
    from services.cli import _register, app

    _register()
    return app


# --- $PROOFNET_CHAIN --------------------------------------------------------------------------


def _echo_chain_app() -> typer.Typer:
    probe = typer.Typer()

    @probe.command()
    def show(chain: ChainOpt, key: Annotated[str, typer.Option()]) -> None:
        typer.echo(f"{chain} {key}")

    return probe


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({}, [], DEFAULT_CHAIN),
        ({CHAIN_ENV: "http://10.0.0.2:9000"}, [], "http://10.0.0.2:9000"),
        ({CHAIN_ENV: "http://10.0.0.2:9000"}, ["--chain", "http://h:1"], "http://h:1"),
    ],
)
def test_chain_comes_from_the_flag_then_the_environment_then_the_default(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str], expected: str
) -> None:
    monkeypatch.delenv(CHAIN_ENV, raising=False)
    result = CliRunner().invoke(_echo_chain_app(), [*args, "--key", "k"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{expected} k"


def test_chain_option_help_names_the_variable() -> None:
    result = CliRunner().invoke(_echo_chain_app(), ["--help"], env={"COLUMNS": "80"})
    assert CHAIN_ENV in result.output and DEFAULT_CHAIN in result.output


# --- key files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json at all", "not a JSON key file"),
        ('{"type": "rsa"}', "not an ed25519 key file"),
        ('{"type": "ed25519"}', "key file has no seed"),
        ('{"type": "ed25519", "seed": "zz"}', "not a ProofNet key file"),
        ('["a", "list"]', "not an ed25519 key file"),
    ],
)
def test_a_bad_key_file_is_one_typed_error(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(KeyFileError) as caught:
        load_key_file(path)
    assert str(path) in caught.value.message and reason in caught.value.message
    assert path.read_text() == content  # never overwritten


def test_a_missing_or_directory_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such key file"):
        load_key_file(tmp_path / "absent.key", create=False)
    with pytest.raises(KeyFileError, match="is a directory"):
        load_key_file(tmp_path)
    created = load_key_file(tmp_path / "new" / "fresh.key")
    assert load_key_file(tmp_path / "new" / "fresh.key").address == created.address


def test_a_bad_key_file_prints_one_line_without_traceback(tmp_path: Path) -> None:
    probe = typer.Typer()

    @probe.command()
    def use(key: Path) -> None:
        with reported_errors():
            load_key_file(key)

    path = tmp_path / "broken.key"
    path.write_text("{")
    result = CliRunner().invoke(probe, [str(path)], env={"COLUMNS": "80"})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad_key_file:"), result.output
    assert "Traceback" not in result.output


# --- examples from any directory --------------------------------------------------------------


@pytest.mark.parametrize("name", ["examples/digits-mlp.yaml", "digits-mlp.yaml"])
def test_example_specs_resolve_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from services.ops.demo import demo_specs

    monkeypatch.chdir(tmp_path)
    path = resolve_spec_path(Path(name))
    assert path.read_bytes() == (ROOT / "examples" / "digits-mlp.yaml").read_bytes()
    specs, terms = demo_specs(path, 3)
    assert [s.seed for s in specs] == [11, 12, 13] and terms["payment"] > 0


def test_a_local_file_wins_over_the_shipped_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits-mlp.yaml").write_text("mine")
    assert resolve_spec_path(Path("digits-mlp.yaml")) == Path("digits-mlp.yaml")


def test_an_unknown_spec_names_the_shipped_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExampleNotFoundError, match=r"digits-mlp\.yaml") as caught:
        resolve_spec_path(Path("no-such.yaml"))
    assert "no-such.yaml" in caught.value.message


def test_demo_with_an_unknown_spec_fails_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--spec", "nope.yaml"],
        cwd=tmp_path,
        env={"COLUMNS": "80", "PATH": "", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: no_such_spec: nope.yaml")
    assert "Traceback" not in out.stderr


# --- testnet up / status / down without processes ---------------------------------------------


def test_testnet_up_help_fits_80_columns() -> None:
    result = CliRunner().invoke(_cli(), ["testnet", "up", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    for flag in ("--port", "--reset", "--dir", "--json", "8545"):
        assert flag in result.output
    _fits(result.output)


def test_a_fixed_port_in_use_fails_at_once(tmp_path: Path, taken_port: int) -> None:
    topology = default_topology()
    topology.chain_port = taken_port
    net = LocalTestnet(tmp_path / "net", topology)
    with pytest.raises(PortInUseError, match=str(taken_port)):
        net.start()
    assert not (tmp_path / "net").exists()


def _seed_workdir(workdir: Path) -> LocalTestnet:
    """A testnet directory as a previous ``up`` left it (processes gone)."""
    net = LocalTestnet(workdir, default_topology())
    for name in (*(a.name for a in net.topology.actors), "submitter"):
        load_key_file(net.key_file(name))
    for i, actor in enumerate(net.topology.actors):
        actor.port, actor.pid = 1 + i, None
        (workdir / "data" / actor.name).mkdir(parents=True)
        net.log_file(actor.name).parent.mkdir(parents=True, exist_ok=True)
        net.log_file(actor.name).write_text("old log\n")
    net.topology.chain_port = 9  # discard: nothing answers
    (workdir / "chain.db").write_text("old chain")
    net.save()
    return net


def test_reset_empties_the_chain_but_keeps_the_keys(tmp_path: Path) -> None:
    net = _seed_workdir(tmp_path)
    keys = sorted(p.name for p in (tmp_path / "keys").iterdir())
    removed = {p.name for p in net.reset()}
    assert removed == {"chain.db", "data", "logs", STATE_FILE}
    assert not net.has_database()
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == keys


def test_up_says_when_it_reuses_the_database(tmp_path: Path, taken_port: int) -> None:
    _seed_workdir(tmp_path)
    args = ["testnet", "up", "--dir", str(tmp_path), "--port", str(taken_port)]
    result = CliRunner().invoke(_cli(), args, env={"COLUMNS": "80"})
    assert result.exit_code == 2
    assert f"reusing {tmp_path / 'chain.db'} (--reset starts a new chain)" in result.output
    assert f"port_in_use: port {taken_port}" in result.output
    assert (tmp_path / "chain.db").exists()


def test_up_reset_wipes_the_database_first(tmp_path: Path, taken_port: int) -> None:
    _seed_workdir(tmp_path)
    args = ["testnet", "up", "--dir", str(tmp_path), "--port", str(taken_port), "--reset"]
    result = CliRunner().invoke(_cli(), args, env={"COLUMNS": "80"})
    assert "--reset: chain.db, data, logs, testnet.json removed" in result.output
    assert not (tmp_path / "chain.db").exists() and (tmp_path / "keys").is_dir()


@pytest.mark.e2e
def test_a_chain_that_cannot_start_fails_fast_naming_its_log(tmp_path: Path) -> None:
    (tmp_path / "chain.db").write_text("not a database")
    args = ["testnet", "up", "--dir", str(tmp_path), "--port", "0", "--timeout", "120"]
    result = CliRunner().invoke(_cli(), args, env={"COLUMNS": "80"})
    assert result.exit_code == 2
    assert "error: testnet: chain exited during start-up" in result.output
    assert "file is not a database" in result.output
    assert str(tmp_path / "logs" / "chain.log") in result.output
    assert "agents started" not in result.output


def test_status_of_a_stopped_testnet_fits_80_columns(tmp_path: Path) -> None:
    _seed_workdir(tmp_path)
    result = CliRunner().invoke(
        _cli(), ["testnet", "status", "--dir", str(tmp_path)], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    _fits(result.output)
    assert "services.strategies.cheaters:PerturbFrom?step=137&price_bps=9000" in result.output
    for name in ("chain", "solver-honest-1", "verifier-2", "submitter"):
        assert name in result.output
    assert result.output.count("exited") == 6  # the chain and the 5 agents
    as_json = CliRunner().invoke(
        _cli(), ["testnet", "status", "--dir", str(tmp_path), "--json"], env={"COLUMNS": "80"}
    )
    data = json.loads(as_json.stdout)
    assert {a["name"] for a in data["accounts"]} >= {"solver-cheater", "submitter"}
    assert all(len(a["address"]) == 42 for a in data["accounts"])


def test_loaded_topology_round_trips(tmp_path: Path) -> None:
    net = _seed_workdir(tmp_path)
    again = LocalTestnet.load(tmp_path)
    assert isinstance(again.topology, Topology)
    assert [a.name for a in again.topology.actors] == [a.name for a in net.topology.actors]
    assert again.actor("solver-cheater").strategy_label == "PerturbFrom"


# --- the demo's table -------------------------------------------------------------------------


def _demo_report() -> dict[str, Any]:
    cheater = "services.strategies.cheaters:PerturbFrom?step=137&price_bps=9000"
    jobs = [
        ("solver-cheater", cheater, "slashed", 14, 137, 0, 3_000_000),
        ("solver-honest-1", "honest", "settled", 0, None, 2_000_000, 0),
        ("solver-honest-2", "honest", "settled", 0, None, 2_000_000, 0),
    ]
    return {
        "ok": True,
        "jobs": [
            {
                "job_id": f"{i:x}" * 64,
                "solver": solver,
                "strategy": strategy,
                "outcome": outcome,
                "dispute_rounds": rounds,
                "located_step": step,
                "paid_to_solver": paid,
                "slashed": slashed,
            }
            for i, (solver, strategy, outcome, rounds, step, paid, slashed) in enumerate(jobs)
        ],
        "balances": {
            name: {
                "balance": 12_345_678_901,
                "stake": 3_000_000,
                "jobs_completed": 1,
                "jobs_slashed": 0,
            }
            for name in ("solver-honest-1", "solver-honest-2", "solver-cheater", "verifier-1")
        },
        "supply": {"holds": True, "held": 10**12, "issued": 10**12},
        "figures": {
            "training_seconds": 30.1,
            "verification_seconds": 4.2,
            "dispute_seconds": 9.9,
            "sample_steps_reexecuted": 300,
            "steps_trained": 1800,
            "sample_fraction": 0.1667,
            "dispute_steps_reexecuted": 137,
        },
        "wall_seconds": 88.0,
    }


def test_demo_tables_fit_80_columns() -> None:
    from services.cli.demo import _print_report

    console = Console(width=WIDTH, record=True, force_terminal=False)
    _print_report(_demo_report(), console)
    text = console.export_text()
    _fits(text)
    rows = [line for line in text.splitlines() if line[:12] in {f"{i:x}" * 12 for i in range(3)}]
    assert len(rows) == 3, text  # one line per job: nothing folded
    assert [line.split()[1] for line in rows] == [
        "solver-cheater",
        "solver-honest-1",
        "solver-honest-2",
    ]
    assert all(line.rstrip() == line for line in rows)
    assert "3,000,000" in text and "12,345,678,901" in text and "137" in text
    assert "services.strategies.cheaters:PerturbFrom?step=137&price_bps=9000" in text


# --- adversaries report -----------------------------------------------------------------------


@pytest.fixture
def quick_report(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``adversaries report`` without its scenarios, with fake statistics; records the trial
    counts it was asked for."""
    from services.sim import detection, scenarios
    from services.sim.detection import DetectionStats

    asked: list[int] = []

    def fake_trials(trials: int, **config: Any) -> DetectionStats:
        asked.append(trials)
        return DetectionStats(8, 2, 2, 1, trials, trials // 2, 0.464, (0, trials), (0.0, 1.0), 0)

    monkeypatch.setattr(scenarios, "SCENARIOS", [])
    monkeypatch.setattr(detection, "CONFIGS", [{"verifiers": 1}])
    monkeypatch.setattr(detection, "run_detection_trials", fake_trials)
    return asked


def test_adversaries_report_prints_to_stdout_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_report: list[int]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(_cli(), ["adversaries", "report"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Adversaries")
    assert "**50 seeded trials**" in result.stdout and quick_report == [50]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_adversaries_report_keeps_the_trial_count_of_its_output_file(
    tmp_path: Path, quick_report: list[int]
) -> None:
    from services.sim.report import recorded_trials

    out = tmp_path / "adversaries.md"
    out.write_text((ROOT / "docs" / "adversaries.md").read_text(encoding="utf-8"))
    made_with = recorded_trials(out.read_text(encoding="utf-8"))
    assert made_with is not None and made_with >= 50
    result = CliRunner().invoke(_cli(), ["adversaries", "report", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert quick_report == [made_with]
    assert recorded_trials(out.read_text(encoding="utf-8")) == made_with
    result = CliRunner().invoke(_cli(), ["adversaries", "report", "-o", str(out), "--trials", "12"])
    assert quick_report == [made_with, 12]
    assert recorded_trials(out.read_text(encoding="utf-8")) == 12


# --- a real testnet ---------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_testnet_up_status_down(tmp_path: Path) -> None:
    workdir = Path("net")  # relative, as a user types it: the printed paths stay short

    def proofnet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            cwd=tmp_path,
            env={"COLUMNS": "80", "PATH": "", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        up = proofnet("testnet", "up", "--dir", str(workdir), "--port", "0")
        assert up.returncode == 0, up.stderr[-3000:]
        for stage in ("new chain database", "chain started", "agents started", "health ok"):
            assert stage in up.stderr
        _fits(up.stdout)
        assert "accounts" in up.stdout and "key files" in up.stdout
        assert str(workdir / "keys" / "submitter.key") in up.stdout
        assert "export PROOFNET_CHAIN=http://127.0.0.1:" in up.stdout
        status = proofnet("testnet", "status", "--dir", str(workdir), "--json")
        rows = json.loads(status.stdout)
        assert all(row["alive"] for row in rows["processes"].values())
        staked = {a["name"]: a["stake"] for a in rows["accounts"]}
        assert staked["solver-honest-1"] > 0 and staked["verifier-1"] > 0
        table = proofnet("testnet", "status", "--dir", str(workdir))
        _fits(table.stdout)
    finally:
        down = proofnet("testnet", "down", "--dir", str(workdir))
    assert down.returncode == 0, down.stderr
    assert "testnet stopped" in down.stdout

"""Every table-printing command at 80 columns: no line longer than 80, no value cut with '…'.

Issue 13 found ``servic…`` (a strategy class path one must paste into ``--strategy``), ``3,0…``
(an amount), a chain URL without its port and an economics table forced to 140 columns. Each
test runs a real command (or, where the command needs running processes, the function that
draws its table) with ``COLUMNS=80`` and checks the output as a person at an 80-column terminal
reads it, plus that the values one copies (class paths, URLs, roots) are whole on one line.
No testnet is started: the commands read local data or a node served in-process.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from contracts_sim.crypto import key_from_seed
from services.client import LocalChainClient
from services.node import NodeSettings, create_app
from tests.conftest import ROOT
from tests.services.test_client import CHAIN_ID, make_chain, play

WIDTH = 80
ELLIPSIS = "…"
EXAMPLE_SPEC = ROOT / "examples" / "digits-mlp.yaml"
CHEATER = "services.strategies.cheaters:PerturbFrom?step=137&price_bps=9000"


def assert_fits(output: str, whole: Iterable[str] = ()) -> None:
    """No line wider than the terminal, no '…', and each of ``whole`` intact on one line."""
    lines = output.splitlines()
    assert lines, "the command printed nothing"
    too_long = [f"{len(line)}: {line}" for line in lines if len(line) > WIDTH]
    assert not too_long, "lines wider than 80 columns:\n" + "\n".join(too_long)
    cut = [line for line in lines if ELLIPSIS in line]
    assert not cut, "values cut with '…':\n" + "\n".join(cut)
    broken = [value for value in whole if not any(value in line for line in lines)]
    assert not broken, f"split across lines or missing: {broken}\n{output}"


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    from services.cli import _register

    _register()
    return CliRunner(env={"COLUMNS": str(WIDTH), "LINES": "50"})


def invoke(cli: CliRunner, *args: str) -> str:
    from services.cli import app

    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


# --- commands that read local data --------------------------------------------------------


def test_economics_fits_80_columns(cli: CliRunner) -> None:
    output = invoke(cli, "economics", str(EXAMPLE_SPEC))
    assert "deterred" in output and "min stake" in output
    assert_fits(output, whole=["no-training", "wrong-learning-rate", "stalling-challenger"])


def test_economics_json_keeps_what_the_table_leaves_out(cli: CliRunner) -> None:
    """The compact table drops role, caught, c and s; --json has them, for every row."""
    rows = json.loads(invoke(cli, "economics", str(EXAMPLE_SPEC), "--json"))["rows"]
    assert rows and all(
        {"role", "caught", "cheated_segments", "saved_fraction"} <= set(row) for row in rows
    )


def test_economics_wide_folds_rather_than_cuts(cli: CliRunner) -> None:
    """--wide asks for more than 80 columns: it may wrap cells, never drop their ends."""
    output = invoke(cli, "economics", str(EXAMPLE_SPEC), "--wide")
    assert_fits(output)


def test_strategies_fits_80_columns(cli: CliRunner) -> None:
    from services.strategies import catalogue

    class_paths = [cls.describe()["class"] for cls in catalogue()]
    assert_fits(invoke(cli, "strategies"), whole=class_paths)


# --- commands that talk to a node: one served in-process ----------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def node_with_a_settled_job() -> Iterator[tuple[str, str]]:
    """A node on loopback whose chain has one settled job: (its URL, the job id)."""
    chain = make_chain()
    played = dict(play(LocalChainClient(chain)))
    job_id = str(played["post_job"][0])
    settings = NodeSettings(
        db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, chain=chain),
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the node did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}", job_id
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_job_status_fits_80_columns(
    cli: CliRunner, node_with_a_settled_job: tuple[str, str]
) -> None:
    """Roots are 64 hex digits: beside a label they may fold onto two lines, not lose digits."""
    url, job_id = node_with_a_settled_job
    output = invoke(cli, "status", job_id, "--chain", url)
    root = json.loads(invoke(cli, "status", job_id, "--chain", url, "--json"))["final_root"]
    assert_fits(output)
    assert root[:32] in output and root[-16:] in output, output


def _recorded_testnet(workdir: Path, chain_port: int) -> None:
    """A testnet's state file and key files, as `testnet up` leaves them (processes gone)."""
    from services.ops.localnet import LocalTestnet, default_topology

    topology = default_topology(CHEATER)
    topology.chain_port = chain_port
    for port, actor in enumerate(topology.actors, start=_free_port()):
        actor.port = port
    net = LocalTestnet(workdir, topology)
    for name in [actor.name for actor in topology.actors] + ["submitter"]:
        key_file = net.key_file(name)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(json.dumps(key_from_seed(f"width/{name}").to_json()))
    net.save()


def test_testnet_status_fits_80_columns(
    cli: CliRunner, node_with_a_settled_job: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = node_with_a_settled_job
    _recorded_testnet(tmp_path, int(url.rsplit(":", 1)[1]))
    output = invoke(cli, "testnet", "status", "--dir", str(tmp_path))
    addresses = [key_from_seed(f"width/{name}").address for name in ("verifier-2", "submitter")]
    assert_fits(output, whole=[url, CHEATER, *addresses])


# --- tables of commands that run processes: their drawing functions -----------------------


def _demo_report() -> dict[str, Any]:
    """What `proofnet demo --json` reports, with the widths of a real run."""

    def job(seed: int, solver: str, strategy: str, outcome: str) -> dict[str, Any]:
        cheated = outcome == "slashed"
        return {
            "job_id": f"{seed:02x}" * 32,
            "solver": solver,
            "strategy": strategy,
            "outcome": outcome,
            "dispute_rounds": 9 if cheated else 0,
            "located_step": 137 if cheated else None,
            "paid_to_solver": 0 if cheated else 1_400_000,
            "slashed": 3_000_000 if cheated else 0,
            "timeline_seconds": {"training": 12.3, "verification": 4.5, "dispute": 8.9},
        }

    names = ["solver-honest-1", "solver-honest-2", "solver-cheater", "verifier-1", "verifier-2"]
    return {
        "ok": True,
        "jobs": [
            job(11, "solver-honest-1", "honest", "settled"),
            job(12, "solver-cheater", CHEATER, "slashed"),
            job(13, "solver-honest-2", "honest", "settled"),
        ],
        "balances": {
            name: {
                "balance": 1_234_567_890,
                "stake": 3_000_000,
                "jobs_completed": 1,
                "jobs_slashed": 0,
            }
            for name in names
        },
        "supply": {"holds": True, "total": 10_000_000_000, "minted": 123_456_789, "burned": 0},
        "figures": {
            "training_seconds": 36.9,
            "verification_seconds": 13.5,
            "dispute_seconds": 8.9,
            "steps_trained": 1800,
            "steps_reexecuted_by_verifiers": 512,
            "sample_steps_reexecuted": 450,
            "dispute_steps_reexecuted": 62,
            "reexecuted_fraction": 0.2844,
            "sample_fraction": 0.25,
        },
        "processes_left_running": [],
        "wall_seconds": 74.2,
    }


def test_demo_report_fits_80_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli.demo import _print_report

    monkeypatch.setenv("COLUMNS", str(WIDTH))
    _print_report(_demo_report())
    assert_fits(capsys.readouterr().out, whole=["solver-honest-1", "1,400,000", CHEATER])

"""The submitter's commands as a user meets them: ``submit`` refuses a mistyped spec before
anything is posted, ``download`` refuses an unsettled job unless ``--force`` (and then warns),
a wrong ``--chain`` is one clear line, ``strategies`` fits 80 columns."""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

import services.cli.jobs as jobs
from contracts_sim.codec import to_json_value
from contracts_sim.records import JobStatus
from protocol.exact import train_trajectory
from protocol.exact.export import read_exact_state
from protocol.merkle import root_of
from protocol.spec import JobSpec, parse_spec
from protocol.types import Address, Hash32
from services.agents.blobs import HttpBlobSource
from services.cli import _register, app
from services.client import HttpChainClient
from services.node import NodeSettings, create_app
from tests.agent_views import job_view_for
from tests.conftest import tiny_spec_dict
from tests.services.test_client import CHAIN_ID, agent_like, make_chain

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

_register()
URL = "http://chain.test"
SOLVER = "ab" * 20


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def invoke(*args: str) -> Result:
    return CliRunner(env={"COLUMNS": "80"}).invoke(app, list(args))


# --- submit: the spec file is checked before anything is posted ---------------------------


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> HttpChainClient:
    """An in-process node (dev mode: faucet, a block per transaction); ``--chain`` reaches it."""
    settings = NodeSettings(
        db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
    )
    api = TestClient(create_app(settings, chain=make_chain()))
    monkeypatch.setattr(jobs, "HttpChainClient", lambda url: HttpChainClient(http=api))
    return HttpChainClient(http=api)


def spec_file(tmp_path: Path, **terms: Any) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**tiny_spec_dict(), "terms": terms}))
    return path


def test_submit_posts_the_terms_of_the_file(node: HttpChainClient, tmp_path: Path) -> None:
    path = spec_file(tmp_path, payment=500, sample_count=2)
    result = invoke("submit", str(path), "--chain", URL, "--key", str(tmp_path / "k.key"))
    assert result.exit_code == 0, result.output
    job = node.get_job(result.stdout.strip())
    assert (job["payment"], job["sample_count"]) == (500, 2)


def test_a_mistyped_term_posts_nothing(node: HttpChainClient, tmp_path: Path) -> None:
    path = spec_file(tmp_path, paymnet=500)
    key = tmp_path / "k.key"
    result = invoke("submit", str(path), "--chain", URL, "--key", str(key))
    assert result.exit_code == 2
    assert result.stderr == (
        "error: malformed_spec: terms.paymnet: unknown key; did you mean 'payment'?\n"
    )
    assert node.list_jobs() == []
    assert not key.exists()  # refused before a key was made or the faucet asked


def test_a_bad_key_file_is_one_line(node: HttpChainClient, tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_text("not json")
    result = invoke("submit", str(spec_file(tmp_path)), "--chain", URL, "--key", str(key))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: bad_key_file: {key}: not a JSON key file")
    assert result.stderr.count("\n") == 1
    assert node.list_jobs() == []


# --- a wrong --chain ------------------------------------------------------------------------


def test_an_agents_url_as_chain_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = httpx.MockTransport(agent_like)
    monkeypatch.setattr(
        jobs, "HttpChainClient", lambda url: HttpChainClient(url, transport=transport)
    )
    result = invoke("status", "cd" * 32, "--chain", "http://127.0.0.1:8601")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: not_a_chain_node: http://127.0.0.1:8601 is not a ProofNet chain node "
        "(it is a solver agent); pass the chain node's URL to --chain\n"
    )


def test_nothing_listening_is_one_line_naming_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = invoke("status", "cd" * 32, "--chain", url)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: unreachable: no chain node answers at {url} (")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


# --- download -------------------------------------------------------------------------------


class Served:
    """A solver's data as the blob source serves it: the trajectory's leaves and final model."""

    def __init__(self, leaves: list[bytes], model: bytes) -> None:
        self.leaf_list, self.final = leaves, model

    def leaves(self, solver: str, job_id: str, count: int) -> list[bytes] | None:
        return self.leaf_list if len(self.leaf_list) == count else None

    def blob(self, solver: str, job_id: str, entry: bytes, max_bytes: int) -> bytes | None:
        return None

    def model(self, solver: str, job_id: str, max_bytes: int) -> bytes | None:
        return self.final


class OneJob:
    """The chain as ``download`` reads it: one job record."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self.job


@pytest.fixture(scope="module")
def committed() -> tuple[JobSpec, list[bytes], bytes]:
    """A real tiny trajectory: its spec, leaves and final state blob."""
    spec = parse_spec(tiny_spec_dict())
    trajectory = train_trajectory(spec, keep_blobs=True)
    final = trajectory.blobs[trajectory.leaves[-1]]
    return spec, list(trajectory.leaves), final


@pytest.fixture
def job_with_status(
    monkeypatch: pytest.MonkeyPatch, committed: tuple[JobSpec, list[bytes], bytes]
) -> Iterator[Callable[[str], str]]:
    """Sets up the chain's job record with a given status; returns its id."""
    spec, leaves, final = committed
    job_id = "ef" * 32

    def with_status(status: str) -> str:
        view = job_view_for(
            spec,
            job_id=job_id,
            status=JobStatus(status),
            solver=Address(SOLVER),
            final_root=Hash32(root_of(leaves)),
            final_state_hash=Hash32(leaves[-1]),
        )
        record = to_json_value(view.record)  # the chain's answer: the whole record
        monkeypatch.setattr(jobs, "HttpChainClient", lambda url: OneJob(record))
        return job_id

    monkeypatch.setattr(
        HttpBlobSource,
        "from_chain",
        classmethod(lambda cls, client, fetcher=None: Served(leaves, final)),
    )
    yield with_status


def test_download_of_a_settled_job_says_what_the_file_holds(
    job_with_status: Callable[[str], str], tmp_path: Path
) -> None:
    job_id, out = job_with_status("settled"), tmp_path / "model.safetensors"
    result = invoke("download", job_id, "--chain", URL, "--out", str(out))
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert f"wrote {out}" in text
    assert "holds the exact training state: int64 Q16 parameters" in text
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "hash matches the job's committed final state" in text
    assert f"proofnet export {out}" in text
    assert result.stderr == ""
    spec, state = read_exact_state(out.read_bytes())  # the spec travels in the file
    assert spec == parse_spec(tiny_spec_dict()) and int(state["step"]) == spec.steps


@pytest.mark.parametrize("status", ["slashed", "committed"])
def test_download_refuses_a_job_that_is_not_settled(
    status: str, job_with_status: Callable[[str], str], tmp_path: Path
) -> None:
    out = tmp_path / "model.safetensors"
    result = invoke("download", job_with_status(status), "--chain", URL, "--out", str(out))
    assert result.exit_code == 2
    line = result.stderr
    assert line.startswith(f"error: download_refused: job efefefefefef… is {status}, not settled")
    assert line.rstrip().endswith("--force downloads it anyway") and line.count("\n") == 1
    assert not out.exists()


def test_download_force_writes_the_cheaters_model_with_a_loud_warning(
    job_with_status: Callable[[str], str], tmp_path: Path
) -> None:
    out = tmp_path / "cheat.safetensors"
    job_id = job_with_status("slashed")
    result = invoke("download", job_id, "--chain", URL, "--out", str(out), "--force", "--json")
    assert result.exit_code == 0, result.output
    warning = flat(result.stderr)
    assert "WARNING: job efefefefefef… is SLASHED, not settled" in warning
    assert "This model is NOT a verified training result" in warning
    report = json.loads(result.stdout)
    assert (report["status"], report["settled"]) == ("slashed", False)
    assert "hash verified" not in result.output
    exported = invoke("export", str(out))  # the warning follows the file
    assert exported.exit_code == 0 and "SLASHED" in exported.stderr


# --- strategies -------------------------------------------------------------------------------


def test_strategies_fit_80_columns_with_paste_able_class_paths() -> None:
    from services.strategies import catalogue

    result = invoke("strategies")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    for cls in catalogue():
        path = cls.describe()["class"]
        assert any(line.split()[1:2] == [path] for line in lines), path
    described = json.loads(invoke("strategies", "--json").stdout)
    assert all(d["description"] for d in described)  # what the table leaves out
